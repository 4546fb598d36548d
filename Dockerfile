FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY digest ./digest
COPY workers ./workers
COPY schema ./schema
COPY emails ./emails
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["uvicorn", "digest.web.app:app", "--host", "0.0.0.0", "--port", "8000"]
