# segstream service image: `docker compose up` builds it from this repository.
FROM python:3.11-slim

# NUMBA_CACHE_DIR: the compiled steps' machine code, built once here (operators/compiled.py),
# in a directory the service user can read; site-packages is not writable at run time.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/app/.numba-cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY operators ./operators
COPY stream ./stream
RUN pip install . && useradd --system --uid 10001 segstream \
    && mkdir -p /app/.numba-cache && chown segstream /app/.numba-cache
USER segstream
RUN python -c "import operators.pipeline as p; p.warm_up()"

EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["segstream"]
CMD ["serve"]
