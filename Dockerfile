# The aiops engine as an image, for docker-compose.yml. Untested: nobody on the project can run
# Docker on their machines, so this file has never been built here. Keep it small.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY aiops ./aiops
RUN pip install .
# Playbooks are read from a folder, not from the installed package (executor.playbooks_dir).
COPY playbooks ./playbooks

# Not root. /data is created here so that a new named volume mounted on it is owned by aiops.
RUN useradd --system --create-home --uid 10001 aiops && mkdir /data && chown aiops /data
USER aiops

ENV AIOPS_DATA_DIR=/data \
    AIOPS_EXECUTOR__PLAYBOOKS_DIR=/app/playbooks \
    AIOPS_API_HOST=0.0.0.0
EXPOSE 8080
# The role comes from AIOPS_ROLE (all | detect | incidents); -v logs partition moves and leadership.
CMD ["aiops", "-v", "run"]
