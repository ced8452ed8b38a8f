# The mlops-nb model server: serves a project's @champion (and the challenger of a rollout) on port 8080.
#
#   docker build -t mlops-nb .
#   docker run -p 8080:8080 -v "$PWD/my-project:/project" -e MLOPS_NB_TOKEN=change-me mlops-nb
#
# The project folder (mlops.yaml, contract.yaml and its MLflow store, or a tracking_uri pointing at a tracking server)
# is mounted at /project and must be writable by the container's user (uid 10001) for the prediction log; or run
# with `--user "$(id -u)"`. The embedded SQLite store records its artifact folder by absolute path: with it, mount
# the project at the path it has on the host instead and name that path:
#   docker run -p 8080:8080 -v "$PWD:$PWD" --user "$(id -u)" -e MLOPS_NB_TOKEN=change-me mlops-nb \
#       mlops-nb serve --host 0.0.0.0 --port 8080 --project "$PWD" Listening on 0.0.0.0 (any address but loopback) needs a bearer token in MLOPS_NB_TOKEN:
# without one the server refuses to start, unless `--insecure-no-auth` is added behind a proxy that authenticates.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true

WORKDIR /src
COPY settings.ini setup.py README.md ./
COPY mlops_nb ./mlops_nb
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 mlops && mkdir /project && chown mlops /project
USER mlops
WORKDIR /project

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
CMD ["mlops-nb", "serve", "--host", "0.0.0.0", "--port", "8080", "--project", "/project"]
