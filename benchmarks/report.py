"""`make bench`'s results.md and results.png from results.json's dict. Serving figures are
medians over the interleaved rounds, with (min-max) beside them."""

from __future__ import annotations

from pathlib import Path

from benchmarks.serving import CONCURRENCY


def sp(s: dict | None, fmt: str = "{:.1f}") -> str:
    """A spread as 'median (min-max)'."""
    if not s:
        return "-"
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def header(r: dict) -> str:
    m = r["machine"]
    gpu = m.get("gpu") or "none (CPU only)"
    cpu = m.get("cpu") or {"model": m["processor"], "flags": []}
    flags = ", ".join(cpu["flags"]) or "no notable flags"
    return (
        f"Measured {r['date']} on {m['cores']} cores ({cpu['model']}; {flags}), torch threads "
        f"{m['torch_threads']}, GPU: {gpu}. Every serving phase ran {r['rounds']} times "
        f"({r['phase_s']:.0f} s each), interleaved with its baseline's; figures are medians "
        f"(min-max over the rounds). The whole run took {r['seconds'] / 60:.0f} minutes"
        f"{_sections(r)}.\n"
    )


def _sections(r: dict) -> str:
    """Where the run's time went (seconds per section), where the run recorded it."""
    parts = [f"{name} {s / 60:.1f}" for name, s in r.get("section_s", {}).items()]
    return f" ({', '.join(parts)} min)" if parts else ""


def target_table(r: dict) -> list[str]:
    rows = ["| target | figure (median) | wanted | met |", "|---|---|---|---|"]
    for t in r["targets"]:
        fig = t["figure"]
        shown = f"{fig:.2f}" if isinstance(fig, float) else str(fig)
        rows.append(f"| {t['target']} | {shown} | {t['wanted']} | {'yes' if t['met'] else 'NO'} |")
    return rows


def _token_bound(bt: dict) -> list[str]:
    """The grouped ratio's bound: if a step's time followed its padded tokens, the ratio
    would be the padded tokens per example padded to 64 over those grouped."""
    if "token_ratio_grouped" not in bt:
        return []
    fixed, grouped = (bt[k]["padded_tokens_per_example"] for k in ("fixed", "grouped"))
    return [
        f"| train, kcbert-base shape: padded tokens per example in the measured steps "
        f"(padded 64 / grouped; their ratio bounds the speed-up) | {fixed:.1f} | {grouped:.1f} "
        f"| {bt['token_ratio_grouped']:.2f}x |"
    ]


def comparisons(r: dict) -> list[str]:
    f, t, b = r["featurize"], r["train"], r["base"]
    bt, v = b["train"], b["variants"]
    served = v["variants"][v["served"]]["batch32_pairs_per_s"]
    return [
        "| same-run comparison | original | this project | ratio |",
        "|---|---|---|---|",
        f"| featurize, pairs/s on {f['pairs']} pairs (no target: under 2 s for KLUE's size) "
        f"| {f['original_pairs_per_s']:.0f} | {f['stage_pairs_per_s']:.0f} | {f['ratio']:.1f}x |",
        f"| train, demo-size random BERT, examples/s (no target: optimiser overhead on a toy) "
        f"| {t['fixed']['examples_per_s']:.0f} "
        f"| {max(t['dynamic']['examples_per_s'], t['grouped']['examples_per_s']):.0f} "
        f"| {t['ratio']:.2f}x |",
        f"| train, kcbert-base shape, examples/s (padded 64 / length-grouped) "
        f"| {bt['fixed']['examples_per_s']:.2f} | {bt['grouped']['examples_per_s']:.2f} "
        f"| {bt['ratio']:.2f}x |",
        *_token_bound(bt),
        f"| inference in process, kcbert-base shape, pairs/s (the tutorial's batch 1 padded "
        f"PyTorch fp32 / the served variant at batch 32) | {b['tutorial_batch1_pairs_per_s']:.1f} "
        f"| {served:.1f} | {served / b['tutorial_batch1_pairs_per_s']:.1f}x |",
        f"| no-op `dvc repro` (s) | | {r['pipeline']['noop_repro_s']:.2f} | |",
        f"| no-op Prefect flow run, ephemeral API (s) | | {r['pipeline']['noop_flow_s']:.1f} | |",
    ]


def where_time_went(s: dict) -> str:
    """pairs per model call; padding; queue / model / rest of app / outside the app (ms)."""
    if "pairs_per_call" not in s:
        return "- | - | -"
    return (
        f"{sp(s['pairs_per_call'])} | {sp(s['padding_share'], '{:.0%}')} | "
        f"{s['queue_ms']['median']:.0f} / {s['model_ms_per_call']['median']:.0f} / "
        f"{s['app_other_ms']['median']:.0f} / {s['outside_app_ms']['median']:.0f}"
    )


SERVE_HEAD = (
    "| clients | {a} req/s | {b} req/s | ratio | {b} p50 / p99 ms | pairs per model call "
    "| padding | queue / model / rest of app / outside app (ms) | load generator CPU "
    "| {b} CPU (all cores) |"
)
SERVICE_HEAD = (
    "| clients | req/s | p50 / p99 ms | pairs per model call | padding | queue / model / "
    "rest of app / outside app (ms) | load generator CPU | service CPU (all cores) |"
)


def service_cells(y: dict) -> str:
    """A service's phase: latency, where its time went, and the CPU it and the load took."""
    return (
        f"{y['p50_ms']['median']:.0f} / {y['p99_ms']['median']:.0f} | {where_time_went(y)} "
        f"| {sp(y.get('loadgen_cpu_share'), '{:.0%}')} "
        f"| {sp(y.get('server_cpu_share'), '{:.0%}')} |"
    )


def serve_table(summary: dict, a: str, b: str, ratio: dict) -> list[str]:
    """Service `b` against baseline `a`, at each concurrency."""
    rows = [SERVE_HEAD.format(a=a, b=b), "|---|---|---|---|---|---|---|---|---|---|"]
    for c in CONCURRENCY:
        x, y = summary[a][f"c{c}"], summary[b][f"c{c}"]
        r = sp(ratio[f"c{c}"], "{:.2f}x")
        rows.append(f"| {c} | {sp(x['rps'])} | {sp(y['rps'])} | {r} | {service_cells(y)}")
    return rows


def single_table(summary: dict) -> list[str]:
    """One service alone, at each concurrency."""
    rows = [SERVICE_HEAD, "|---|---|---|---|---|---|---|---|"]
    for c in CONCURRENCY:
        y = summary[f"c{c}"]
        rows.append(f"| {c} | {sp(y['rps'])} | {service_cells(y)}")
    return rows


def open_rows(label: str, o: dict) -> list[str]:
    o50, over, after = o["open50"], o["overload"], o["after_overload"]
    return [
        f"| {label} open loop at 50 % ({o50['rate']:.1f} req/s) | p50/p99 "
        f"{o50['p50_ms']['median']:.0f}/{o50['p99_ms']['median']:.0f} ms; 503: "
        f"{o50['shed_503']}; other errors: {o50['errors']} |",
        f"| {label} open loop at 150 % ({over['rate']:.1f} req/s) | answered p99 "
        f"{sp(over.get('p99_ms'), '{:.0f}')} ms (bound {over['bound_ms']:.0f}); 503: "
        f"{over['shed_503']}; other errors: {over['errors']} |",
        f"| {label}, 1 client right after the overload | {sp(after['rps'])} req/s; errors: "
        f"{after['errors']} |",
    ]


def runtime_notes(notes: dict) -> list[str]:
    """What the accuracy-aware tuner was given and spent; the variants a runtime refused."""
    out = []
    if tuner := notes.get("nncf"):
        out.append(
            f"Accuracy-aware int8: {tuner['tuner']}, {tuner['metric']}, at most "
            f"{tuner['max_drop']:.0%} lost; budget {tuner['validation_pairs']} validation "
            f"pairs, {tuner['max_iterations']} iterations, ranking on {tuner['ranking_pairs']} "
            f"pairs ({tuner.get('ranking_workers', 1)} workers); took {tuner['seconds']:.0f} s, "
            "validation agreement "
            f"{pct(tuner['validation_agreement'])}."
        )
    for dtype, why in (notes.get("ctranslate2_refused") or {}).items():
        out.append(f"CTranslate2 {dtype}: not measured ({why}).")
    return [" ".join(out)] if out else []


def variants_table(v: dict) -> list[str]:
    """Each inference variant in process: speed, answers, arithmetic against the peak."""
    peak, gemm = v["peak_tflops_at_stated_clock"], v["gemm_tflops"]
    kinds = ("fp32", "bf16", "int8")
    rows = [
        f"{v['non_embedding_parameters'] / 1e6:.1f} M non-embedding parameters, {v['threads']} "
        f"threads, {v['dev_pairs']} dev pairs. Peak at the stated clock (fp32 / bf16 / int8): "
        + " / ".join(f"{peak[k]:.2f}" for k in kinds)
        + " TFLOP/s; one large matrix product reaches "
        + " / ".join(f"{gemm[k]:.2f}" for k in kinds)
        + " TFLOP/s. Served: "
        + v["served"]
        + ".",
        *runtime_notes(v.get("runtimes", {})),
        "",
        "| variant | pairs/s batch 1 | pairs/s batch 32 | argmax agreement with PyTorch fp32 "
        "| dev accuracy | TFLOP/s (batch 32) | share of peak | share of its GEMM | keeps the "
        "answers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in v["variants"].items():
        rows.append(
            f"| {name} | {x['batch1_pairs_per_s']:.1f} | {x['batch32_pairs_per_s']:.1f} "
            f"| {pct(x['agreement'])} | {pct(x['dev_accuracy'])} | {x['tflops']:.3f} "
            f"| {x['share_of_peak']:.0%} | {x['share_of_gemm']:.0%} "
            f"| {'yes' if x['keeps_answers'] else 'no'} |"
        )
    return rows


def e5_section(e5: dict) -> list[str]:
    m, t = e5["model"], e5["train"]
    rows = [
        "",
        f"**The demo's model** (`make demo`: {m['model_type']}, {m['num_hidden_layers']} x "
        f"{m['hidden_size']}, vocabulary {m['vocab_size']}), in process on its dev file:",
        "",
        *variants_table(e5["variants"]),
    ]
    fr, tr = t["frozen"], t["trained"]
    rows += [
        "",
        "| fine-tuning e5 (max length 128, grouped batches of 32) | examples/s | trainable "
        "parameters | peak RSS |",
        "|---|---|---|---|",
        f"| word embeddings frozen (the demo) | {fr['examples_per_s']:.1f} "
        f"| {fr['trainable_parameters'] / 1e6:.1f} M | {fr['peak_rss_mb']:.0f} MB |",
        f"| every weight trained | {tr['examples_per_s']:.1f} "
        f"| {tr['trainable_parameters'] / 1e6:.1f} M | {tr['peak_rss_mb']:.0f} MB |",
        f"| frozen / trained | {t['ratio']:.2f}x | | |",
        "",
        "The e5 service as shipped, beside the same service on ONNX Runtime fp32 (the earlier "
        "default), in interleaved rounds:",
        "",
    ]
    s = e5["serve"]
    rows += serve_table(s["summary"], "onnxruntime fp32", "service", s["ratio_vs_onnxruntime"])
    rows += ["", "| e5 service | figure |", "|---|---|"]
    rows += open_rows("e5", s["open"]["summary"])
    return rows


def markdown(r: dict) -> str:
    b = r["base"]["serve"]
    lines = [header(r), *target_table(r), "", *comparisons(r), ""]
    lines += [
        f"**Serving at kcbert-base's shape** (random weights; in-process ceiling "
        f"{b['ceiling_pairs_per_s']:.1f} pairs/s at batch 32 on every core):",
        "",
        *serve_table(b["summary"], "flask", "bentoml", {
            k: v["ratio_vs_flask"] for k, v in b["summary"]["bentoml"].items()
        }),
        "",
        "**Inference variants at kcbert-base's shape** (random weights, in process, on the "
        "mirror's dev pairs; no target: with random weights near-tied answers flip under any "
        "reduced precision, and the dev accuracy is chance):",
        "",
        *variants_table(r["base"]["variants"]),
        "",
        "| base service | figure |",
        "|---|---|",
        *open_rows("base", b["open"]["summary"]),
    ]  # fmt: skip
    if r.get("e5"):
        lines += e5_section(r["e5"])
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    e5 = (r.get("e5") or {}).get("serve", {}).get("summary")
    for ax, (title, summary, names) in zip(
        (ax1, ax2),
        (
            ("kcbert-base shape", r["base"]["serve"]["summary"], ("flask", "bentoml")),
            ("e5 (the demo)", e5, ("onnxruntime fp32", "service")),
        ),
        strict=True,
    ):
        if not summary:
            ax.set_axis_off()
            continue
        for name, style in zip(names, ("o--", "o-")[-len(names) :], strict=True):
            med = [summary[name][f"c{c}"]["rps"]["median"] for c in CONCURRENCY]
            lo = [
                m - summary[name][f"c{c}"]["rps"]["min"]
                for c, m in zip(CONCURRENCY, med, strict=True)
            ]
            hi = [
                summary[name][f"c{c}"]["rps"]["max"] - m
                for c, m in zip(CONCURRENCY, med, strict=True)
            ]
            ax.errorbar(CONCURRENCY, med, yerr=[lo, hi], fmt=style, capsize=3, label=name)
        ax.set(xscale="log", xlabel="concurrent clients", ylabel="requests/s", title=title)
        ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
