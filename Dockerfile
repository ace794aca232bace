FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PYTHONPATH=/app/platform:/app
COPY pyproject.toml constraints.txt README.md ./
COPY distortions distortions
COPY metric metric
COPY platform platform
COPY frontend frontend
COPY manage.py ./
# the dependencies and the two libraries (distortions, metric); the platform is never installed: it runs
# from /app/platform through PYTHONPATH (README, "Layout")
RUN pip install --no-cache-dir -c constraints.txt .
RUN useradd --create-home app && mkdir -p /data/media && chown app /data/media
USER app
EXPOSE 8000
