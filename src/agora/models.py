"""Every table of every service, so Alembic sees one complete metadata."""

from agora import audit_store as _audit_store  # noqa: F401
from agora import revocation as _revocation  # noqa: F401
from agora.db import Base
from agora.services.auth import models as _auth_models  # noqa: F401
from agora.services.messaging import models as _messaging_models  # noqa: F401
from agora.services.publications import models as _publications_models  # noqa: F401

metadata = Base.metadata
