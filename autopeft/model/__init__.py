"""The base model: loading (packaged, local, Hub) and placement (roles, layers per architecture)."""
