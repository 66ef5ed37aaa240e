# The citywatch service: slim, non-root, the same console script.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY citywatch ./citywatch
COPY collectors ./collectors
COPY rules ./rules
COPY alerting ./alerting
COPY api ./api
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/citywatch citywatch \
    && mkdir -p /var/lib/citywatch && chown citywatch /var/lib/citywatch
USER citywatch
ENV CITYWATCH_DATA_DIR=/var/lib/citywatch CITYWATCH_API_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["citywatch"]
CMD ["run"]
