"""Streamlit glue shared by the pages: the configured clients, cached look-ups, and how problems are shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from app.backends import BackendError, BackendUnavailable
from app.config import AppConfig
from app.mlflow_client import Mlflow
from app.model_client import ModelServer
from app.registry import FormChoices, form_choices, schema_choices
from app.xray_client import XrayServer


@st.cache_resource
def config() -> AppConfig:
    return AppConfig.from_env()


def champion() -> ModelServer:
    cfg = config()
    return ModelServer(cfg.model_url, cfg.model_name, what="model server (champion)", timeout_s=cfg.timeout_s)


def challenger() -> ModelServer | None:
    cfg = config()
    if not cfg.challenger_url:
        return None
    return ModelServer(cfg.challenger_url, cfg.model_name, what="model server (challenger)", timeout_s=cfg.timeout_s)


def xray() -> XrayServer:
    cfg = config()
    return XrayServer(cfg.xray_url, cfg.xray_model_name, timeout_s=cfg.timeout_s)


def mlflow() -> Mlflow:
    return Mlflow(config().mlflow_url, timeout_s=config().timeout_s)


@st.cache_data(ttl=30, show_spinner=False)
def choices() -> FormChoices:
    """The served champion's vocabularies; the published categories (with a note why) when MLflow cannot say."""
    cfg = config()
    try:
        return form_choices(mlflow(), cfg.model_name)
    except (BackendUnavailable, BackendError) as exc:
        return schema_choices(str(exc))


@contextmanager
def reported(what: str) -> Iterator[None]:
    """Show any failure inside as a readable message (never a traceback), then carry on with the page."""
    try:
        yield
    except BackendUnavailable as exc:
        st.error(str(exc), icon=":material/cloud_off:")
    except BackendError as exc:
        st.error(f"{what}: {exc}", icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - a page shows what went wrong instead of a traceback
        st.error(f"{what} failed unexpectedly: {type(exc).__name__}: {exc}", icon=":material/error:")


def backends_caption() -> None:
    cfg = config()
    st.caption(f"Model server {cfg.model_url} · MLflow {cfg.mlflow_url}"
               + (f" · challenger {cfg.challenger_url}" if cfg.challenger_url else ""))
