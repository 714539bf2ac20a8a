"""Theme files shipped with pltui (the repository's top-level themes/ folder)."""
