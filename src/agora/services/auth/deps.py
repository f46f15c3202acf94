"""What the auth routes ask for besides the shared dependencies (`agora.web.deps`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from agora.services.auth.service import AuthService
from agora.web.deps import from_app

# Provided by `create_app`.
AuthServiceDep = Annotated[AuthService, Depends(from_app(AuthService))]
