"""The shape of the wachttijden data set: its columns, the features the model uses, the target."""

from __future__ import annotations

# The 21 columns of the published CSV, in file order. The loader only requires the
# feature and target columns, so a real file whose other columns differ still loads.
RAW_COLUMNS: tuple[str, ...] = (
    "ID",
    "PEILDATUM",
    "ORGANISATIE_AGB",
    "ORGANISATIENAAM",
    "LOCATIE_AGB",
    "LOCATIENAAM",
    "STRAAT",
    "HUISNUMMER",
    "POSTCODE",
    "PLAATS",
    "PROVINCIE",
    "ROAZ_REGIO",
    "TYPE_ZORGINSTELLING",
    "SPECIALISME_CODE",
    "SPECIALISME",
    "VERRICHTING_CODE",
    "VERRICHTING",
    "TYPE_WACHTTIJD",
    "WACHTTIJD",
    "BRON",
    "OPMERKING",
)

SEPARATOR = ";"

# Categorical model inputs, sent by clients as strings under exactly these names.
FEATURES: tuple[str, ...] = (
    "TYPE_WACHTTIJD",
    "SPECIALISME",
    "ROAZ_REGIO",
    "TYPE_ZORGINSTELLING",
)

# Closed sets of the published data; a value outside them is an unknown category.
# SPECIALISME is open (new specialisms appear) and only has to be non-empty.
KNOWN_CATEGORIES: dict[str, frozenset[str]] = {
    "TYPE_WACHTTIJD": frozenset({"Polikliniek", "Behandeling", "Diagnostiek"}),
    "TYPE_ZORGINSTELLING": frozenset({"Ziekenhuis", "Kliniek"}),
    "ROAZ_REGIO": frozenset(
        {
            "Acute Zorgnetwerk Noord-Nederland",
            "Netwerk Acute Zorg Zwolle",
            "Acute Zorg Euregio",
            "Acute Zorgregio Oost",
            "Regionaal Netwerk Acute Zorg Midden-Nederland",
            "Netwerk Acute Zorg Noordwest",
            "Netwerk Acute Zorg West",
            "ROAZ Zuidwest-Nederland",
            "Netwerk Acute Zorg Brabant",
            "Netwerk Acute Zorg Limburg",
            "Traumazorgnetwerk Midden-West",
        }
    ),
}

# Features whose new values are expected in production (new specialisms appear). A model trained
# with some of their values masked as out-of-vocabulary declares them open (see model.py): the
# server then answers an unseen value through that bucket instead of refusing it. The others are
# closed: an unseen value there is a client error.
OPEN_FEATURES: tuple[str, ...] = ("SPECIALISME",)

# Waiting time in weeks.
TARGET = "WACHTTIJD"

# The registered model name and the model name the server answers to.
MODEL_NAME = "wachttijden"
