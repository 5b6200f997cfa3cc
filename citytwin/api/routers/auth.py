"""Authentication: OAuth2 password flow → bearer token; who am I."""

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from citytwin import security
from citytwin.api.deps import Principal, current_principal

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token")
def token(request: Request, form: OAuth2PasswordRequestForm = Depends()) -> dict:
    """Exchange a user name and password for a bearer token."""
    with request.app.state.engine.connect() as conn:
        try:
            user = security.authenticate(conn, name=form.username, password=form.password)
        except security.AuthError as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}
            ) from exc
    tok, expires = security.issue_token(
        user=user, secret=request.app.state.secret_key, minutes=request.app.state.settings.token_minutes
    )
    return {"access_token": tok, "token_type": "bearer", "expires_in": expires, "role": user["role"], "user": user["name"]}


@router.get("/me")
def me(principal: Principal = Depends(current_principal)) -> dict:
    """The caller's name and role."""
    return {"name": principal.name, "role": principal.role, "kind": principal.kind}
