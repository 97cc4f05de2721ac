"""fedctr: privacy-preserving federated CTR/CVR learning for advertising."""

from fedctr.errors import FedctrError

__version__ = "0.1.0"

__all__ = ["FedctrError", "__version__"]
