"""Operations: health and metrics, cost, daily digest, deploy."""
