"""FastAPI's documented WebSocket tutorial apps and its "bigger applications" router example,
as the FastAPI docs show them with only the imports renamed (the HTML pages are shortened).

tests/test_fastapi_port.py runs FastAPI's own tests of them, likewise ported, under our
TestClient and a real uvicorn.
"""
