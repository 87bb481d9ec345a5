"""Translation task: loaders for parallel files, JSONL and `hf:` datasets; BLEU/chrF with their signatures."""
from __future__ import annotations

from pathlib import Path

import datasets
from sacrebleu.metrics import BLEU, CHRF

from pipelines import Key, Scores, Task, UserError, read_jsonl, read_lines, require_field
from pipelines.hub import is_hub_spec, load_hub


class TranslationTask(Task):
    kind = "n2m"
    primary_metric = "bleu"
    data_settings = {
        "source_lang": Key("de", str, help="suffix of source files for a prefix spec (train -> train.de)"),
        "target_lang": Key("en", str, help="suffix of target files"),
        "source_field": Key("source", str, help="JSONL / hf: field holding the source text"),
        "target_field": Key("target", str, help="JSONL / hf: field holding the target text"),
    }

    def load(self, spec: str, split: str) -> datasets.Dataset:
        """`a.de,b.en` (parallel files), `x.jsonl`, `hf:name`, or a prefix `dir/train` + `.de`/`.en`."""
        data = self.settings["data"]
        if is_hub_spec(spec):
            return self._from_records(load_hub(spec, split), spec)
        if "," in spec:
            src, tgt = (self.resolve(p.strip()) for p in spec.split(",", 1))
            return self._parallel(src, tgt)
        path = self.resolve(spec)
        if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
            rows = [(require_field(r, data["source_field"], path, n), require_field(r, data["target_field"], path, n))
                    for n, r in read_jsonl(path)]
            return datasets.Dataset.from_dict({"source": [str(s) for s, _ in rows], "target": [str(t) for _, t in rows]})
        prefix = str(path)
        return self._parallel(Path(f"{prefix}.{data['source_lang']}"), Path(f"{prefix}.{data['target_lang']}"))

    def _parallel(self, src: Path, tgt: Path) -> datasets.Dataset:
        sources, targets = read_lines(src), read_lines(tgt)
        if len(sources) != len(targets):
            raise UserError(f"parallel files differ in length: {src} has {len(sources)} lines, {tgt} has "
                            f"{len(targets)}; line i of one must translate line i of the other")
        return datasets.Dataset.from_dict({"source": sources, "target": targets})

    def _from_records(self, table: datasets.Dataset, spec: str) -> datasets.Dataset:
        data = self.settings["data"]
        if "translation" in table.column_names:   # the WMT/OPUS layout: {"de": ..., "en": ...}
            pairs = table["translation"]
            return datasets.Dataset.from_dict({"source": [p[data["source_lang"]] for p in pairs],
                                               "target": [p[data["target_lang"]] for p in pairs]})
        for field in (data["source_field"], data["target_field"]):
            if field not in table.column_names:
                raise UserError(f"{spec}: no column {field!r} (columns: {', '.join(table.column_names)}); "
                                f"set data.source_field / data.target_field")
        return datasets.Dataset.from_dict({"source": table[data["source_field"]], "target": table[data["target_field"]]})

    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenization, cased) on detokenized text."""
        streams = [list(r) for r in zip(*references)]
        bleu, chrf = BLEU(), CHRF()
        b, c = bleu.corpus_score(hypotheses, streams), chrf.corpus_score(hypotheses, streams)
        return Scores({"bleu": b.score, "chrf": c.score}, "bleu",
                      f"BLEU {bleu.get_signature()} / chrF2 {chrf.get_signature()}")
