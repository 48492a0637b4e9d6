#!/usr/bin/env python3
"""Side-by-side: one ELIP pre-training step of `elip bench train-step` vs the official PyTorch code.

Run with a Python that has torch (see README "Ours vs the official PyTorch code" for the venv and
how to get the official code, guoyang9/ELIP, outside this repository):

    python scripts/bench-vs-pytorch.py --official-root /work/official/ELIP \
        --elip .build/release/elip --backbones albef,blip --steps 3

For each backbone and pruning setting (ELIP's look-ahead pruning, and none) the rounds alternate:
one official PyTorch step (model kept in this process; forward, backward and AdamW exactly as the
official train loop: zero_grad, model(...), sum of losses, backward, optimizer.step), then one
`elip bench train-step --steps 1 --warmup W --json` process (W = --ours-warmup, default 2; not in
the PyTorch warm-up rounds), whose timed step is its step W + 1 (our process start, model build
and peak probes are not timed). A fresh process's second step still grows its allocator's cache
and page-faults (ALBEF: 6.7-7.2 s against 5.9-6.3 s for later steps), while the PyTorch steps are
timed in a long-lived process; two warm-up steps make both sides steady. The first --warmup rounds
are discarded; the table gives the medians of the rest.

The official model is built at base size from its own configs with random weights: the constructor's
downloads (DeiT weights through torch.hub, bert-base through from_pretrained, the BERT tokenizer)
are replaced by random init and a tokenizer stand-in that returns the same synthetic captions our
bench uses (batch of random word ids, some captions 3 or 6 tokens shorter, padded). Images:
standard normal, our bench's shapes.

METER (meter16, meter32): METERTransformerSS from meter/config.py as README's pre-training command
makes it (`task_mlm_itm_clip_bert clip16|clip32 text_roberta image_size=288|224`; the sacred
config functions are run directly, see `meter_config`). Its downloads are replaced too: the CLIP
JIT checkpoint that `build_model` reads the ViT's shape from (the official CLIP class is built at
ViT-B/16 or /32's shape with its own random init, `clip_from_shape`) and roberta-base's weights
(RobertaModel from roberta-base's config). PyTorch Lightning and torchmetrics get minimal stand-ins
(`stub_lightning_and_torchmetrics`). One step: zero_grad, the module's own training_step (MLM pass
then ITM pass on a batch shaped as the official collator gives it: masked ids and labels, a false
image per sample), backward, the transformers AdamW of meter_utils.set_schedule (its param groups
and lr multipliers; the trainer is read for max_steps only) and its scheduler's step. Pruning off:
the CLIP ViT's `prune_state = None`. Not timed officially either: Lightning's gradient accumulation
(batch_size 4096) steps the optimizer once per several batches; here, as in ours, every step.

Self-check (seconds, no elip binary): `--tiny` builds each official model of --backbones at tiny
shapes (64 wide), runs --steps steps with pruning on and off and fails unless every loss is finite
and pruning shortens the ViT output:

    python scripts/bench-vs-pytorch.py --official-root /work/official/ELIP --tiny --steps 2
"""
import argparse
import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
import types


def die(msg):
    sys.exit(f"bench-vs-pytorch: {msg}")


try:
    import torch
except ImportError:
    die(f"{sys.executable} has no torch; run this script with the PyTorch venv's python (README)")

# What each row of the table runs: our preset, the official model family, image size, text length.
BACKBONES = {
    "albef": dict(preset="albef-base", family="ALBEF", about="ViT-B/16@256 + BERT-base", text=25),
    "blip": dict(preset="blip-base", family="BLIP", about="ViT-B/16@224 + BLIP BERT-base", text=25),
    "meter16": dict(preset="meter-base", family="METER", about="CLIP ViT-B/16@288 + RoBERTa-base", text=50, patch=16, res=288),
    "meter32": dict(preset="meter-base-clip32", family="METER", about="CLIP ViT-B/32@224 + RoBERTa-base", text=50, patch=32, res=224),
}

# Shapes of the --tiny self-check: every encoder 64 wide with 2 heads and few text/fusion layers;
# the ViTs keep their 12 blocks so the official pruning schedules apply unchanged.
TINY = dict(width=64, heads=2, text_layers=2, fusion_layers=2)


def stub_torchvision():
    """timm 0.4.12 imports torchvision.transforms at import time (data pipeline only); PyPI's
    torchvision wheels do not match the CPU torch build, so the benchmark gives timm an empty stand-in."""
    if "torchvision" in sys.modules:
        return

    class Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__init__": lambda self, *a, **k: None})

    for name in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                 "torchvision.datasets", "torchvision.models", "torchvision.ops", "torchvision.io"]:
        sys.modules[name] = Anything(name)
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]


def patch_docstring_decorators():
    """ALBEF's and BLIP's BERT files pass tokenizer_class= to transformers' docstring decorators,
    an argument newer transformers renamed: the decorators only edit docstrings, so use no-ops."""
    import transformers.file_utils as fu
    fu.add_code_sample_docstrings = lambda *a, **k: (lambda f: f)


def enter_official(root, family):
    """Puts <root>/<family> first on sys.path and forgets modules of another family (both ALBEF and
    BLIP call their package `models`)."""
    path = os.path.join(root, family)
    if not os.path.isdir(path):
        die(f"--official-root {root}: no {family}/ folder (expected guoyang9/ELIP's tree)")
    for name in list(sys.modules):
        if name.split(".")[0] in ("models", "optim", "meter", "scheduler", "utils"):
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(os.path.abspath(root))]
    sys.path.insert(0, os.path.abspath(path))
    patch_docstring_decorators()
    os.chdir(path)  # the official configs are read by relative paths


def load_yaml(path):
    """The official scripts read their configs with ruamel (YAML 1.2: 1e-4 is a float, unlike PyYAML)."""
    from ruamel.yaml import YAML
    with open(path) as f:
        return YAML(typ="safe").load(f)


def synthetic_captions(batch, length, vocab, cls, sep, pad, first_word, gen):
    """Our bench's caption shapes: caption b has max(2, length - 3 (b mod 3)) real tokens."""
    ids = torch.full((batch, length), pad, dtype=torch.long)
    mask = torch.zeros((batch, length), dtype=torch.long)
    for b in range(batch):
        used = max(2, length - 3 * (b % 3))
        ids[b, :used] = torch.randint(first_word, vocab, (used,), generator=gen)
        ids[b, 0], ids[b, used - 1] = cls, sep
        mask[b, :used] = 1
    return ids, mask


class Text(types.SimpleNamespace):
    def to(self, device):
        return self


class FixedTokenizer:
    """Stand-in for the BERT tokenizer (bert-base-uncased ids; BLIP's two added tokens): calling it
    returns the prepared synthetic captions, whatever the strings."""
    pad_token_id, cls_token_id, sep_token_id, mask_token_id = 0, 101, 102, 103
    bos_token_id, enc_token_id = 30522, 30523  # BLIP's [DEC], [ENC]

    def __init__(self, ids, mask, size):
        self.ids, self.mask, self.size = ids, mask, size

    def __len__(self):
        return self.size

    def __call__(self, *args, **kwargs):
        return Text(input_ids=self.ids.clone(), attention_mask=self.mask.clone())


def patch_from_pretrained(*classes):
    """from_pretrained(name, config=...) downloads weights: build the same module with random init."""
    for cls in classes:
        cls.from_pretrained = classmethod(lambda c, name, config=None, **kw: c(config, **kw))


def no_download(url, *args, **kwargs):
    return {"model": {}}  # load_state_dict(strict=False) of nothing: the random init stays


def tiny_bert_config(path, folder, **changes):
    """--tiny: the official BERT config.json at TINY's width, written into `folder` (temporary)."""
    with open(path) as f:
        config = json.load(f)
    w = TINY["width"]
    config.update(hidden_size=w, num_attention_heads=TINY["heads"], intermediate_size=4 * w, encoder_width=w, **changes)
    out = os.path.join(folder, os.path.basename(os.getcwd()) + "-" + os.path.basename(path))  # cwd: <root>/<family>
    with open(out, "w") as f:
        json.dump(config, f)
    return out


def tiny_vit(vit_class):
    """--tiny: the official ViT class at TINY's width; depth and the pruning schedule unchanged."""
    return lambda *args, **kw: vit_class(*args, **{**kw, "embed_dim": TINY["width"], "num_heads": TINY["heads"]})


def build_albef(root, spec, prune, batch, gen, tiny=None):
    enter_official(root, "ALBEF")
    from models import model_pretrain, xbert
    from optim import create_optimizer
    patch_from_pretrained(xbert.BertForMaskedLM)
    length = spec["text"]
    config = load_yaml("configs/Pretrain.yaml")
    config["bert_config"] = "configs/config_bert.json"
    if tiny:
        config["bert_config"] = tiny_bert_config(config["bert_config"], tiny, num_hidden_layers=4, fusion_layer=2)
        config.update(vision_width=TINY["width"], queue_size=256)
        model_pretrain.VisionTransformer = tiny_vit(model_pretrain.VisionTransformer)
    ids, mask = synthetic_captions(batch, length, 30522, 101, 102, 0, 1000, gen)
    tokenizer = FixedTokenizer(ids, mask, 30522)
    model = model_pretrain.ALBEF(config=config, text_encoder="bert-base-uncased", tokenizer=tokenizer, init_deit=False)
    if not prune:
        model.visual_encoder.prune_state = None  # the ALBEF baseline: no ELIP pruning
    opt = types.SimpleNamespace(**config["optimizer"])
    optimizer = create_optimizer(opt, model)
    image = torch.randn(batch, 3, config["image_res"], config["image_res"], generator=gen)

    def step():
        optimizer.zero_grad()
        text = tokenizer(None)  # Pretrain.py tokenizes inside the loop
        loss_mlm, loss_ita, loss_itm = model(image, text, alpha=config["alpha"])
        loss = loss_mlm + loss_ita + loss_itm
        loss.backward()
        optimizer.step()
        return loss.item()
    return model, step


def build_blip(root, spec, prune, batch, gen, tiny=None):
    enter_official(root, "BLIP")
    from models import blip_pretrain, med, blip
    patch_from_pretrained(med.BertModel, med.BertLMHeadModel)
    length = spec["text"]
    config = load_yaml("configs/pretrain.yaml")
    med_config = "configs/bert_config.json"
    if tiny:
        med_config = tiny_bert_config(med_config, tiny, num_hidden_layers=2)
        config["queue_size"] = 256
        blip.VisionTransformer = tiny_vit(blip.VisionTransformer)
        create_vit = blip_pretrain.create_vit
        # create_vit returns the base width 768 as a constant: report the tiny width instead.
        blip_pretrain.create_vit = lambda *args, **kw: (create_vit(*args, **kw)[0], TINY["width"])
    ids, mask = synthetic_captions(batch, length, 30522, 101, 102, 0, 1000, gen)
    tokenizer = FixedTokenizer(ids, mask, 30524)
    blip_pretrain.init_tokenizer = lambda: tokenizer
    # The official queue update always all-gathers over torch.distributed; one process: identity.
    blip_pretrain.concat_all_gather = lambda tensor: tensor
    hub_load = torch.hub.load_state_dict_from_url
    torch.hub.load_state_dict_from_url = no_download
    try:
        model = blip_pretrain.BLIP_Pretrain(med_config=med_config, image_size=config["image_size"], vit=config["vit"], vit_grad_ckpt=False,
                                            vit_ckpt_layer=0, queue_size=config["queue_size"],
                                            img_prune=config["img_prune"] if prune else None)
    finally:
        torch.hub.load_state_dict_from_url = hub_load
    optimizer = torch.optim.AdamW(params=model.parameters(), lr=config["init_lr"], weight_decay=config["weight_decay"])
    image = torch.randn(batch, 3, config["image_size"], config["image_size"], generator=gen)
    captions = ["a synthetic caption"] * batch  # the tokenizer stand-in ignores the strings

    def step():
        optimizer.zero_grad()
        loss_ita, loss_itm, loss_lm = model(image, captions, alpha=config["alpha"])
        loss = loss_ita + loss_itm + loss_lm
        loss.backward()
        optimizer.step()
        return loss.item()
    return model, step


def stub_lightning_and_torchmetrics():
    """METER's module is a PyTorch Lightning 1.3 module and its metrics are torchmetrics Metrics;
    neither package is needed to run one step (and Lightning 1.3 does not install beside a current
    torch), so the benchmark gives them minimal stand-ins: LightningModule is an nn.Module whose
    save_hyperparameters() stores the constructor's arguments as `hparams` (attribute access, as
    Lightning's AttributeDict), whose log() does nothing and whose `device` is its parameters';
    Metric is an nn.Module whose call runs update() then compute() on states kept as buffers."""
    import inspect
    from torch import nn

    class AttributeDict(dict):
        __getattr__ = dict.__getitem__

    class LightningModule(nn.Module):
        def save_hyperparameters(self):
            frame = inspect.currentframe().f_back
            args = inspect.getargvalues(frame)
            self.hparams = AttributeDict({k: args.locals[k] for k in args.args if k != "self"})

        def log(self, *args, **kwargs):
            pass

        @property
        def device(self):
            return next(self.parameters()).device

    class Metric(nn.Module):
        def __init__(self, dist_sync_on_step=False):
            super().__init__()

        def add_state(self, name, default, dist_reduce_fx=None):
            self.register_buffer(name, default.clone())

        def forward(self, *args):
            self.update(*args)
            return self.compute()

    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = LightningModule
    metrics = types.ModuleType("torchmetrics")
    metrics.Metric = Metric
    sys.modules["pytorch_lightning"], sys.modules["torchmetrics"] = lightning, metrics


def meter_config(named, updates):
    """The sacred config of METER/meter/config.py as `run.py with <named...> <key=value...>` makes
    it: the `config` defaults, then each named config in order, then the command-line updates. The
    functions' bodies are run directly (sacred itself is not needed: each body only assigns)."""
    import ast
    with open("meter/config.py") as f:
        module = ast.parse(f.read())
    functions = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    helpers = {}
    exec(compile(ast.Module(body=[functions["_loss_names"]], type_ignores=[]), "meter/config.py", "exec"), helpers)
    config = {}
    for name in ["config"] + named:
        if name not in functions:
            die(f"meter/config.py has no config function '{name}'")
        values = {}
        exec(compile(ast.Module(body=functions[name].body, type_ignores=[]), "meter/config.py", "exec"), dict(helpers), values)
        config.update(values)
    config.update(updates)
    return config


def build_meter(root, spec, prune, batch, gen, tiny=None):
    """ELIP-METER pre-training as README's command runs it (`task_mlm_itm_clip_bert clip16|clip32
    text_roberta image_size=288|224`): METERTransformerSS from that config, one step = the official
    training_step (MLM pass then ITM pass, losses summed), backward, and the optimizer of
    meter_utils.set_schedule (transformers AdamW, its param groups and lr multipliers, and the
    polynomial warm-up schedule stepped once per step, as Lightning steps it with interval "step").
    tiny: None, or --tiny's temporary folder (then TINY's shapes; likewise for ALBEF and BLIP)."""
    enter_official(root, "METER")
    stub_lightning_and_torchmetrics()
    from transformers import RobertaConfig
    from meter.modules import meter_module, meter_utils, clip_model_vl_pruning
    length = spec["text"]
    config = meter_config(["task_mlm_itm_clip_bert", f"clip{spec['patch']}", "text_roberta"], dict(image_size=spec["res"]))
    if config["max_text_len"] != length:
        die(f"{spec['preset']}: the official config pads captions to max_text_len {config['max_text_len']}, BACKBONES says {length}")
    # roberta-base's config.json; from_pretrained would download its weights: random init instead.
    text_config = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                                layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    # OpenAI's CLIP ViT-B: build_model reads these shapes from the downloaded JIT checkpoint.
    clip_shape = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                      context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)
    if tiny:
        w = TINY["width"]
        text_config.update(dict(hidden_size=w, num_hidden_layers=TINY["text_layers"], num_attention_heads=TINY["heads"], intermediate_size=4 * w))
        clip_shape.update(vision_width=w, transformer_width=w)
        config.update(input_text_embed_size=w, input_image_embed_size=w, hidden_size=w, num_heads=TINY["heads"], num_top_layer=TINY["fusion_layers"])
    from transformers import RobertaModel
    meter_module.RobertaModel = types.SimpleNamespace(from_pretrained=lambda name, **kw: RobertaModel(text_config, **kw))

    def clip_from_shape(name, resolution_after=224, prune_state=None):
        """build_model without the download: the official CLIP class at ViT-B/<patch>'s shape, its
        own random init (the positional grid is made for resolution_after directly)."""
        return clip_model_vl_pruning.CLIP(vision_patch_size=int(name.split("/")[1]), resolution_after=resolution_after,
                                          prune_state=prune_state, **clip_shape)
    meter_module.build_model = clip_from_shape
    model = meter_module.METERTransformerSS(config)
    if not prune:
        model.vit_model.visual.transformer.prune_state = None  # METER without ELIP: no token pruning
    # set_schedule reads the trainer only for max_steps (config max_steps is set, so no dataloader).
    model.trainer = types.SimpleNamespace(max_steps=config["max_steps"])
    (optimizer,), (schedule,) = meter_utils.set_schedule(model)
    scheduler = schedule["scheduler"]

    # The batch the official collator gives (datamodules/datamodule_base.py collate): captions
    # padded to max_text_len, the whole-word MLM rule (every RoBERTa position is a candidate,
    # round(mlm_prob * L) drawn, special ids skipped, 80/10/10) and a false image per sample.
    pad, bos, eos, mask_id = 1, 0, 2, 50264
    vocab = text_config.vocab_size
    ids, masks = synthetic_captions(batch, length, vocab, bos, eos, pad, 1000, gen)
    labels_mlm = torch.full_like(ids, -100)
    ids_mlm = ids.clone()
    draws = max(1, round(config["mlm_prob"] * length))
    for b in range(batch):
        for j in torch.randperm(length, generator=gen)[:draws].tolist():
            if ids[b, j].item() in (pad, bos, eos):
                continue
            labels_mlm[b, j] = ids[b, j]
            u = torch.rand(2, generator=gen)
            if u[0] < 0.8:
                ids_mlm[b, j] = mask_id
            elif u[1] < 0.5:
                ids_mlm[b, j] = torch.randint(0, vocab, (1,), generator=gen).item()
    res = config["image_size"]
    data = {
        "text": ["a synthetic caption"] * batch,  # compute_itm reads only its length
        "text_ids": ids, "text_masks": masks, "text_labels": torch.full_like(ids, -100),
        "text_ids_mlm": ids_mlm, "text_labels_mlm": labels_mlm,
        "image": [torch.randn(batch, 3, res, res, generator=gen)],
        "false_image_0": [torch.randn(batch, 3, res, res, generator=gen)],
    }

    def step():
        optimizer.zero_grad()
        total_loss = model.training_step(data, 0)
        total_loss.backward()
        optimizer.step()
        scheduler.step()
        return total_loss.item()
    return model, step


BUILDERS = {"ALBEF": build_albef, "BLIP": build_blip, "METER": build_meter}


def run_ours(elip, preset, prune, batch, length, threads, warmup):
    cmd = [elip, "bench", "train-step", "--preset", preset, "--batch", str(batch), "--text-length", str(length),
           "--steps", "1", "--warmup", str(warmup), "--threads", str(threads), "--json"]
    if not prune:
        cmd.append("--no-prune")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not line:
        die(f"{' '.join(cmd)} printed no JSON line:\n{out.stdout[-2000:]}")
    report = json.loads(line[-1])
    return report["variants"][0]["step_seconds_median"], report.get("blas_kernels", "?")


def torch_gemm_rate(threads):
    """PyTorch's own float32 GEMM rate on the ViT-B fc1 shape (1028 x 3072 x 768, F.linear as
    nn.Linear calls it): with our side's OpenBLAS kernels in the summary, it says what each side's
    GEMMs run at on this CPU."""
    torch.set_num_threads(threads)
    x, w = torch.randn(1028, 768), torch.randn(3072, 768)
    for _ in range(3):
        torch.nn.functional.linear(x, w)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(5):
            torch.nn.functional.linear(x, w)
        times.append((time.perf_counter() - t0) / 5)
    return 2 * 1028 * 768 * 3072 / statistics.median(times) / 1e9


def self_check(root, names, prunings, batch, steps):
    """--tiny: each official model at TINY's shapes, `steps` steps per pruning setting; every loss
    must be finite and the ViT output must have the pruned token count when pruning is on."""
    import tempfile
    failures = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-pytorch-tiny-") as folder:
        for name in names:
            spec = BACKBONES[name]
            tokens = {}
            for setting in prunings:
                gen = torch.Generator().manual_seed(7)
                torch.manual_seed(1)
                with contextlib.redirect_stdout(io.StringIO()):  # BLIP prints a line per tied weight
                    model, step = BUILDERS[spec["family"]](root, spec, setting == "on", batch, gen, tiny=folder)
                model.train()
                vit = model.vit_model if spec["family"] == "METER" else model.visual_encoder
                seen = []
                vit.register_forward_hook(lambda m, i, out: seen.append((out[0] if isinstance(out, tuple) else out).shape[1]))
                for r in range(steps):
                    t0 = time.perf_counter()
                    loss = step()
                    ok = loss == loss and abs(loss) != float("inf")
                    print(f"  tiny {name} pruning {setting} step {r + 1}: loss {loss:.4f}, {time.perf_counter() - t0:.2f} s, "
                          f"ViT output tokens {sorted(set(seen))}", flush=True)
                    if not ok:
                        failures.append(f"{name} pruning {setting} step {r + 1}: loss {loss}")
                tokens[setting] = max(seen)
                del model, step
                gc.collect()
            if "on" in tokens and "off" in tokens and not tokens["on"] < tokens["off"]:
                failures.append(f"{name}: the ViT keeps {tokens['on']} tokens with pruning on, {tokens['off']} with it off")
    if failures:
        die("--tiny self-check failed:\n  " + "\n  ".join(failures))
    print(f"--tiny self-check passed: {', '.join(names)} (pruning {', '.join(prunings)}), {steps} steps each, finite losses")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-root", required=True, help="checkout of guoyang9/ELIP (has ALBEF/, BLIP/, METER/)")
    p.add_argument("--elip", default=".build/release/elip", help="our release binary")
    p.add_argument("--backbones", default="albef,blip,meter16,meter32", help="comma list of " + ",".join(BACKBONES))
    p.add_argument("--pruning", default="on,off", help="comma list of on (ELIP look-ahead pruning) and off")
    p.add_argument("--steps", type=int, default=3, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds first")
    p.add_argument("--ours-warmup", type=int, default=2, help="untimed steps in each elip process before its timed one")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, help="torch.set_num_threads and elip --threads (default 2; --tiny: 1, since "
                                                  "spinning worker threads make tiny steps erratic on a busy machine)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--tiny", action="store_true",
                   help="self-check instead of timing: build each official model of --backbones at tiny shapes (64 wide), "
                        "run --steps steps per --pruning setting and fail unless every loss is finite and pruning shortens "
                        "the ViT output (seconds; --elip and --warmup are not used)")
    args = p.parse_args()
    if args.threads is None:
        args.threads = 1 if args.tiny else 2
    if args.steps < 1 or args.warmup < 0 or args.ours_warmup < 0 or args.batch < 2 or args.threads < 1:
        die("--steps and --threads must be >= 1, --warmup and --ours-warmup >= 0, --batch >= 2 (ITM negatives)")
    names = args.backbones.split(",")
    for n in names:
        if n not in BACKBONES:
            die(f"--backbones: '{n}' is not one of {', '.join(BACKBONES)}")
    prunings = args.pruning.split(",")
    for s in prunings:
        if s not in ("on", "off"):
            die(f"--pruning: '{s}' is not on or off")
    root = os.path.abspath(args.official_root)
    torch.set_num_threads(args.threads)
    stub_torchvision()
    if args.tiny:
        if args.json:
            die("--json writes timing rows; --tiny times nothing (drop one of them)")
        return self_check(root, names, prunings, args.batch, args.steps)
    elip = os.path.abspath(args.elip)
    if not os.access(elip, os.X_OK):
        die(f"--elip {args.elip}: not an executable (build with: swift build -c release)")
    json_path = os.path.abspath(args.json) if args.json else None
    rows = []
    kernels = set()
    torch_gflops = torch_gemm_rate(args.threads)
    for name in names:
        spec = BACKBONES[name]
        for setting in prunings:
            prune = setting == "on"
            gen = torch.Generator().manual_seed(7)
            torch.manual_seed(1)
            model, theirs_step = BUILDERS[spec["family"]](root, spec, prune, args.batch, gen)
            model.train()
            print(f"  {name} pruning {setting}: official model {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters",
                  file=sys.stderr, flush=True)
            ours, theirs = [], []
            for r in range(args.warmup + args.steps):
                t0 = time.perf_counter()
                loss = theirs_step()
                dt = time.perf_counter() - t0
                if r < args.warmup:  # each elip process warms itself up: only PyTorch needs these rounds
                    print(f"  {name} pruning {setting} warm-up {r + 1}: PyTorch {dt:.2f} s (loss {loss:.3f})", file=sys.stderr, flush=True)
                    continue
                o, k = run_ours(elip, spec["preset"], prune, args.batch, spec["text"], args.threads, args.ours_warmup)
                print(f"  {name} pruning {setting} round {r + 1 - args.warmup}: PyTorch {dt:.2f} s (loss {loss:.3f}), ours {o:.2f} s, "
                      f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
                ours.append(o)
                kernels.add(k)
                theirs.append(dt)
            rows.append(dict(backbone=name, model=spec["about"], pruning=setting, ours=statistics.median(ours),
                             pytorch=statistics.median(theirs), ours_all=ours, pytorch_all=theirs,
                             ratio=statistics.median(theirs) / statistics.median(ours)))
            del model, theirs_step
            gc.collect()
    print(f"\nbatch {args.batch}, threads {args.threads}, median of {args.steps} alternating rounds after {args.warmup} warm-up; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"GEMM: PyTorch {torch.__version__} F.linear 1028x3072x768 {torch_gflops:.0f} GFLOP/s ({args.threads} thread(s)); "
          f"ours OpenBLAS {', '.join(sorted(kernels))} kernels (elip bench ops gives their rate)")
    print(f"{'backbone':<10} {'model':<34} {'pruning':<8} {'ours s/step':>12} {'PyTorch s/step':>15} {'ratio':>7}")
    for r in rows:
        print(f"{r['backbone']:<10} {r['model']:<34} {r['pruning']:<8} {r['ours']:>12.2f} {r['pytorch']:>15.2f} {r['ratio']:>6.2f}x")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(batch=args.batch, threads=args.threads, ours_warmup=args.ours_warmup, torch=torch.__version__,
                           torch_linear_gflops=torch_gflops, ours_blas_kernels=sorted(kernels), loadavg=os.getloadavg(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
