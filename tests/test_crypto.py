from pathlib import Path

import pytest

from pipeline.crypto import (
    MissingKeyError,
    SealError,
    init_keys,
    load_keys,
    new_data_key,
    open_intake,
    open_with_data_key,
    seal_for_intake,
    seal_with_data_key,
    subject_ref,
)
from schemas import Identity, SubjectIdentities

PERSON = SubjectIdentities(identities=[Identity(identity_type="email",
                                                identity_value="Zoe.Test@Example.org")])


def test_sealed_box_round_trip_and_no_clear_text(tmp_path: Path) -> None:
    init_keys(tmp_path)
    keys = load_keys(tmp_path, need_private=True)
    sealed = seal_for_intake(keys.intake_public, PERSON)
    assert "Zoe" not in sealed.model_dump_json()
    assert open_intake(keys.intake_private or b"", sealed) == PERSON


def test_private_key_file_is_owner_only(tmp_path: Path) -> None:
    init_keys(tmp_path)
    assert (tmp_path / "intake.key").stat().st_mode & 0o777 == 0o600


def test_wrong_key_fails_without_revealing_the_identity(tmp_path: Path) -> None:
    init_keys(tmp_path / "a")
    init_keys(tmp_path / "b")
    sealed = seal_for_intake(load_keys(tmp_path / "a").intake_public, PERSON)
    with pytest.raises(SealError) as info:
        open_intake(load_keys(tmp_path / "b", need_private=True).intake_private or b"", sealed)
    assert "Zoe" not in str(info.value) and "rotated or wrong public key" in str(info.value)


def test_data_key_round_trip_and_shredding() -> None:
    key = new_data_key()
    sealed = seal_with_data_key(key, "r", PERSON)
    assert open_with_data_key(key, sealed) == PERSON
    with pytest.raises(SealError):
        open_with_data_key(new_data_key(), sealed)


def test_subject_ref_is_stable_across_case_and_keyed() -> None:
    other_case = SubjectIdentities(identities=[Identity(identity_type="email",
                                                        identity_value=" zoe.test@example.ORG ")])
    assert subject_ref(b"k" * 32, PERSON) == subject_ref(b"k" * 32, other_case)
    assert subject_ref(b"k" * 32, PERSON) != subject_ref(b"j" * 32, PERSON)
    assert "zoe" not in subject_ref(b"k" * 32, PERSON)


def test_missing_keys_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(MissingKeyError, match="ERASURE_INTAKE_PUBLIC_KEY"):
        load_keys(tmp_path)
