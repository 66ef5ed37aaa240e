# The citywatch service: slim, non-root, the same console script as everywhere else.
FROM python:3.11-slim
WORKDIR /app
# Dependencies first, so that a code change does not reinstall them.
# The runtime lock: the same pins the tests ran with, without the dev tools.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY citywatch ./citywatch
COPY collectors ./collectors
COPY rules ./rules
COPY alerting ./alerting
COPY api ./api
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --home /var/lib/citywatch citywatch \
    && mkdir -p /var/lib/citywatch && chown citywatch /var/lib/citywatch
USER 10001
ENV CITYWATCH_DATA_DIR=/var/lib/citywatch CITYWATCH_API_ADDR=0.0.0.0:8080 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080
VOLUME ["/var/lib/citywatch"]
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["citywatch"]
CMD ["run"]
