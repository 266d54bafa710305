"""The engine's enums and the Django choices that store them hold the same values: a value the engine produces
is always one the database accepts, and one the database holds is always one the engine reads back."""

from __future__ import annotations

from enum import Enum

import pytest
from django.db import models

from mitigation.choices import ActionKindChoices, MitigationLevelChoices
from mitigation.engine.types import ActionKind, AppProfile, Level
from tenants.customer.choices import ApplicationProfileChoices, MitigationActionChoices

MIRRORS: list[tuple[type[Enum], type[models.TextChoices]]] = [
    (Level, MitigationLevelChoices),
    (ActionKind, ActionKindChoices),
    (ActionKind, MitigationActionChoices),
    (AppProfile, ApplicationProfileChoices),
]


@pytest.mark.parametrize(("engine_enum", "choices"), MIRRORS, ids=lambda c: c.__name__)
def test_engine_enum_and_choices_hold_the_same_values(engine_enum: type[Enum], choices: type[models.TextChoices]
                                                      ) -> None:
    assert [member.value for member in engine_enum] == list(choices.values)
    assert [member.name for member in engine_enum] == list(choices.names)
