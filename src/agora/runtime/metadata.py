"""Every table of every service, so Alembic sees one complete metadata."""

from agora.adapters import audit_database as _audit_store  # noqa: F401
from agora.db.engine import Base
from agora.security import revocation as _revocation  # noqa: F401
from agora.services.auth import models as _auth_models  # noqa: F401
from agora.services.messaging import models as _messaging_models  # noqa: F401
from agora.services.publications import models as _publications_models  # noqa: F401

metadata = Base.metadata
