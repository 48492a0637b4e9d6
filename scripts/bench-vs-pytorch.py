#!/usr/bin/env python3
"""Side-by-side: one ELIP pre-training step of `elip bench train-step` vs the official PyTorch code.

Run with a Python that has torch (see README "Ours vs the official PyTorch code" for the venv and
how to get the official code, guoyang9/ELIP, outside this repository):

    python scripts/bench-vs-pytorch.py --official-root /work/official/ELIP \
        --elip .build/release/elip --backbones albef,blip --steps 3

For each backbone and pruning setting (ELIP's look-ahead pruning, and none) the rounds alternate:
one official PyTorch step (model kept in this process; forward, backward and AdamW exactly as the
official train loop: zero_grad, model(...), sum of losses, backward, optimizer.step), then one
`elip bench train-step --steps 1 --warmup 1 --json` process (not in the PyTorch warm-up rounds), whose timed step is its second (so
both sides are timed after a warm-up step; our process start, model build and peak probes are not
timed). The first --warmup rounds are discarded; the table gives the medians of the rest.

The official model is built at base size from its own configs with random weights: the constructor's
downloads (DeiT weights through torch.hub, bert-base through from_pretrained, the BERT tokenizer)
are replaced by random init and a tokenizer stand-in that returns the same synthetic captions our
bench uses (batch of random word ids, some captions 3 or 6 tokens shorter, padded). See
`patch_downloads` for each replacement. Images: standard normal, our bench's shapes.
"""
import argparse
import gc
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


def build_albef(root, prune, batch, length, gen):
    enter_official(root, "ALBEF")
    from models import model_pretrain, xbert
    from optim import create_optimizer
    patch_from_pretrained(xbert.BertForMaskedLM)
    config = load_yaml("configs/Pretrain.yaml")
    config["bert_config"] = "configs/config_bert.json"
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


def build_blip(root, prune, batch, length, gen):
    enter_official(root, "BLIP")
    from models import blip_pretrain, med
    patch_from_pretrained(med.BertModel, med.BertLMHeadModel)
    config = load_yaml("configs/pretrain.yaml")
    ids, mask = synthetic_captions(batch, length, 30522, 101, 102, 0, 1000, gen)
    tokenizer = FixedTokenizer(ids, mask, 30524)
    blip_pretrain.init_tokenizer = lambda: tokenizer
    # The official queue update always all-gathers over torch.distributed; one process: identity.
    blip_pretrain.concat_all_gather = lambda tensor: tensor
    hub_load = torch.hub.load_state_dict_from_url
    torch.hub.load_state_dict_from_url = no_download
    try:
        model = blip_pretrain.BLIP_Pretrain(image_size=config["image_size"], vit=config["vit"], vit_grad_ckpt=False,
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


BUILDERS = {"ALBEF": build_albef, "BLIP": build_blip}


def run_ours(elip, preset, prune, batch, length, threads):
    cmd = [elip, "bench", "train-step", "--preset", preset, "--batch", str(batch), "--text-length", str(length),
           "--steps", "1", "--warmup", "1", "--threads", str(threads), "--json"]
    if not prune:
        cmd.append("--no-prune")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not line:
        die(f"{' '.join(cmd)} printed no JSON line:\n{out.stdout[-2000:]}")
    return json.loads(line[-1])["variants"][0]["step_seconds_median"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-root", required=True, help="checkout of guoyang9/ELIP (has ALBEF/, BLIP/, METER/)")
    p.add_argument("--elip", default=".build/release/elip", help="our release binary")
    p.add_argument("--backbones", default="albef,blip,meter16,meter32", help="comma list of " + ",".join(BACKBONES))
    p.add_argument("--pruning", default="on,off", help="comma list of on (ELIP look-ahead pruning) and off")
    p.add_argument("--steps", type=int, default=3, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds first")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and elip --threads")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 2 or args.threads < 1:
        die("--steps and --threads must be >= 1, --warmup >= 0, --batch >= 2 (ITM negatives)")
    elip = os.path.abspath(args.elip)
    if not os.access(elip, os.X_OK):
        die(f"--elip {args.elip}: not an executable (build with: swift build -c release)")
    names = args.backbones.split(",")
    for n in names:
        if n not in BACKBONES:
            die(f"--backbones: '{n}' is not one of {', '.join(BACKBONES)}")
    prunings = args.pruning.split(",")
    for s in prunings:
        if s not in ("on", "off"):
            die(f"--pruning: '{s}' is not on or off")
    root = os.path.abspath(args.official_root)
    json_path = os.path.abspath(args.json) if args.json else None
    torch.set_num_threads(args.threads)
    stub_torchvision()
    rows = []
    for name in names:
        spec = BACKBONES[name]
        if spec["family"] not in BUILDERS:
            print(f"{name}: the official {spec['family']} step is not wired up (see README)", flush=True)
            continue
        for setting in prunings:
            prune = setting == "on"
            gen = torch.Generator().manual_seed(7)
            torch.manual_seed(1)
            model, theirs_step = BUILDERS[spec["family"]](root, prune, args.batch, spec["text"], gen)
            model.train()
            ours, theirs = [], []
            for r in range(args.warmup + args.steps):
                t0 = time.perf_counter()
                loss = theirs_step()
                dt = time.perf_counter() - t0
                if r < args.warmup:  # each elip process warms itself up: only PyTorch needs these rounds
                    print(f"  {name} pruning {setting} warm-up {r + 1}: PyTorch {dt:.2f} s (loss {loss:.3f})", file=sys.stderr, flush=True)
                    continue
                o = run_ours(elip, spec["preset"], prune, args.batch, spec["text"], args.threads)
                print(f"  {name} pruning {setting} round {r + 1 - args.warmup}: PyTorch {dt:.2f} s (loss {loss:.3f}), ours {o:.2f} s, "
                      f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
                ours.append(o)
                theirs.append(dt)
            rows.append(dict(backbone=name, model=spec["about"], pruning=setting, ours=statistics.median(ours),
                             pytorch=statistics.median(theirs), ours_all=ours, pytorch_all=theirs,
                             ratio=statistics.median(theirs) / statistics.median(ours)))
            del model, theirs_step
            gc.collect()
    print(f"\nbatch {args.batch}, threads {args.threads}, median of {args.steps} alternating rounds after {args.warmup} warm-up; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'backbone':<10} {'model':<34} {'pruning':<8} {'ours s/step':>12} {'PyTorch s/step':>15} {'ratio':>7}")
    for r in rows:
        print(f"{r['backbone']:<10} {r['model']:<34} {r['pruning']:<8} {r['ours']:>12.2f} {r['pytorch']:>15.2f} {r['ratio']:>6.2f}x")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(batch=args.batch, threads=args.threads, torch=torch.__version__,
                           loadavg=os.getloadavg(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
