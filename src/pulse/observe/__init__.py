"""Operations at the edge: Prometheus metrics (declared once) and the health endpoints of long-running commands."""
