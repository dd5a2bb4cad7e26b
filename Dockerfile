# The digitrec service on the base install: ONNX Runtime, no PyTorch (about a tenth of the size
# and the start-up of the full install; see the README's "Install" section).
#   docker build -t digitrec . && docker run --rm -p 8000:8000 digitrec
# benchmarks/light_install.py repeats these steps in a fresh virtualenv (where Docker is missing)
# and measures them; .ci/run builds the same base venv and smoke-tests it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The base install only: no [train] extra, so no torch (the shipped models are .onnx files).
RUN pip install . && rm -rf /src

# Not root: the service needs no privilege and reads only its installed files.
RUN useradd --create-home --uid 10001 digitrec
USER digitrec
WORKDIR /home/digitrec

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
# The project's rule is that a server we start binds 127.0.0.1. A container is the exception:
# its loopback is private to it, so the service must listen on all of the container's
# addresses for `docker run -p` to reach it; which host addresses see it is docker's -p choice
# (e.g. -p 127.0.0.1:8000:8000).
CMD ["digitrec", "serve", "--host", "0.0.0.0", "--port", "8000"]
