"""The ledger of prepared raw content: one write-once record per content hash, on every data-lake backend."""

from __future__ import annotations

from tasks.data import ledger


class TestLedger:
    def test_content_is_unknown_until_recorded_then_found_by_its_hash(self, datalake):
        digest = ledger.content_digest(b"ID;WACHTTIJD\n1;3\n")
        assert ledger.processed(datalake, "wachttijden", digest) is None
        ledger.record(datalake, "wachttijden", digest, raw_file="w.csv", partition="run=a", run_id="a")
        entry = ledger.processed(datalake, "wachttijden", digest)
        assert entry["partition"] == "run=a" and entry["sha256"] == digest and entry["raw_file"] == "w.csv"

    def test_a_second_record_of_the_same_content_keeps_the_first(self, datalake):
        digest = ledger.content_digest(b"same bytes")
        ledger.record(datalake, "wachttijden", digest, raw_file="a.csv", partition="run=first", run_id="first")
        again = ledger.record(datalake, "wachttijden", digest, raw_file="b.csv", partition="run=second",
                              run_id="second")
        assert again["partition"] == "run=first"
        assert ledger.processed(datalake, "wachttijden", digest)["run_id"] == "first"

    def test_one_changed_byte_is_new_content(self, datalake):
        first, second = ledger.content_digest(b"WACHTTIJD\n3\n"), ledger.content_digest(b"WACHTTIJD\n4\n")
        ledger.record(datalake, "wachttijden", first, raw_file="w.csv", partition="run=a", run_id="a")
        assert first != second
        assert ledger.processed(datalake, "wachttijden", second) is None


class TestRejectedContent:
    def test_a_refusal_is_recorded_once_with_its_reason_and_kept_apart_from_prepared_content(self, datalake):
        refused, prepared = ledger.content_digest(b"a,b\n1,2\n"), ledger.content_digest(b"a;b\n1;2\n")
        ledger.record(datalake, "wachttijden", prepared, raw_file="ok.csv", partition="run=a", run_id="a")
        first = ledger.record_rejected(datalake, "wachttijden", refused, raw_file="bad.csv", partition="run=b",
                                       reason="wrong separator")
        again = ledger.record_rejected(datalake, "wachttijden", refused, raw_file="bad-copy.csv", partition="run=c",
                                       reason="something else")
        assert first["reason"] == again["reason"] == "wrong separator" and again["partition"] == "run=b"
        assert ledger.processed(datalake, "wachttijden", refused) is None  # refused is not prepared
        assert ledger.known_digests(datalake, "wachttijden") == ({prepared}, {refused})

    def test_known_digests_of_an_empty_ledger_and_of_another_dataset(self, datalake):
        ledger.record(datalake, "other", ledger.content_digest(b"x"), raw_file="x.csv", partition="run=x",
                      run_id="x")
        assert ledger.known_digests(datalake, "wachttijden") == (set(), set())
