"""The per-kind Bloom parameters and per-family MinHash parameters the hub publishes: all SQL
of the ``kind_parameters`` and ``minhash_parameters`` tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from sigshare.hub.domain import KindParameters, MinHashParameters, utc
from sigshare.hub.storage._sql import dialect_insert
from sigshare.hub.storage.models import KindParametersRow, MinHashParametersRow

_Parameters = TypeVar("_Parameters", KindParameters, MinHashParameters)
_ParametersRow = TypeVar("_ParametersRow", KindParametersRow, MinHashParametersRow)


class ParameterRepository:
    """The per-kind Bloom parameters and per-family MinHash parameters the hub publishes."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get_kind(self, kind: str) -> KindParameters | None:
        return self._get(KindParametersRow, KindParameters, kind)

    def set_kind(self, parameters: KindParameters) -> KindParameters:
        """Insert or replace the parameters of ``parameters.kind``."""
        return self._upsert(KindParametersRow, KindParameters, "kind", parameters)

    def list_kinds(self) -> list[KindParameters]:
        return self._list(KindParametersRow, KindParameters, KindParametersRow.kind)

    def get_minhash_family(self, family: str) -> MinHashParameters | None:
        return self._get(MinHashParametersRow, MinHashParameters, family)

    def set_minhash_family(self, parameters: MinHashParameters) -> MinHashParameters:
        """Insert or replace the parameters of ``parameters.family``."""
        return self._upsert(MinHashParametersRow, MinHashParameters, "family", parameters)

    def list_minhash_families(self) -> list[MinHashParameters]:
        return self._list(MinHashParametersRow, MinHashParameters, MinHashParametersRow.family)

    # Both tables hold exactly the fields of their domain type, so one conversion serves both.

    @staticmethod
    def _domain(row: _ParametersRow, domain: type[_Parameters]) -> _Parameters:
        return domain(**{f.name: getattr(row, f.name) for f in dataclasses.fields(domain)})

    def _get(
        self, model: type[_ParametersRow], domain: type[_Parameters], key: str
    ) -> _Parameters | None:
        row = self._session.get(model, key)
        return None if row is None else self._domain(row, domain)

    def _list(
        self, model: type[_ParametersRow], domain: type[_Parameters], order: Any
    ) -> list[_Parameters]:
        return [
            self._domain(row, domain)
            for row in self._session.scalars(select(model).order_by(order))
        ]

    def _upsert(
        self,
        model: type[_ParametersRow],
        domain: type[_Parameters],
        key: str,
        parameters: _Parameters,
    ) -> _Parameters:
        # INSERT … ON CONFLICT DO UPDATE … RETURNING: two admins setting the same new kind at
        # once cannot collide, unlike read-then-insert. PostgreSQL and SQLite (≥ 3.35) spell it
        # alike; only the construct's module differs.
        values = dataclasses.asdict(parameters)
        values["updated_at"] = utc(parameters.updated_at)
        statement = dialect_insert(self._session)(model).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[key],
            set_={name: statement.excluded[name] for name in values if name != key},
        )
        row = self._session.scalars(
            statement.returning(model), execution_options={"populate_existing": True}
        ).one()
        return self._domain(row, domain)
