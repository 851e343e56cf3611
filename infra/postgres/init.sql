-- First-start initialisation of the server Postgres (docker-compose mounts this file into
-- /docker-entrypoint-initdb.d). The ModelRunner applies its own schema by migrations; this only
-- provides the extension and the databases of the other components.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE DATABASE mlflow;
CREATE DATABASE airflow;
