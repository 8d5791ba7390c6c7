"""OAuth2's password flow: a token URL reading ``OAuth2PasswordRequestForm`` and a route that
needs the token, for driving Swagger UI's Authorize dialog in a real browser."""

from typing import Annotated

from FasterAPI import Depends, Faster, HTTPException
from FasterAPI.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

app = Faster(title="Password flow", version="1.0")
oauth2 = OAuth2PasswordBearer(tokenUrl="/token", scopes={"me": "Read who I am"})
USERS = {"ann": "secret"}


@app.post("/token")
async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
    if USERS.get(form.username) != form.password:
        raise HTTPException(400, "Incorrect username or password")
    return {"access_token": f"token-of-{form.username}:{' '.join(form.scopes)}", "token_type": "bearer"}


@app.get("/me")
async def me(token: Annotated[str, Depends(oauth2)]) -> dict[str, str]:
    return {"token": token}
