"""An upload endpoint for tests/test_formparsers.py over a real server."""

from __future__ import annotations

from FasterAPI import Faster, Form, UploadFile

app = Faster()


@app.post("/upload")
async def upload(file: UploadFile, note: str = Form()) -> dict[str, object]:
    on_disk = not file._in_memory
    content = await file.read()
    return {
        "filename": file.filename,
        "size": file.size,
        "on_disk": on_disk,
        "same": content == bytes(range(256)) * 8192,
        "note": note,
    }
