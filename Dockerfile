# Build the wheel in one stage, install it (not editable) in the next: the image runs exactly what
# `pip install verdict-digest` would, templates and migrations included as package data.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY digest ./digest
COPY workers ./workers
COPY schema ./schema
COPY emails ./emails
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
ENV PYTHONUNBUFFERED=1 DIGEST_ENV=production
EXPOSE 8000
CMD ["uvicorn", "digest.web.app:app", "--host", "0.0.0.0", "--port", "8000"]
