#!/usr/bin/env python3
"""gen_pil_expected.py: expected pixels for tests/test_transforms.c, from Pillow and timm themselves.

The C test has no Python at run time: this script is run once by hand, and its output, a block of C constants,
lives in tests/test_transforms.c between the "BEGIN GENERATED" and "END GENERATED" markers. Run it again after
changing a case:

    pip install timm && pip install --target /tmp/pil12 'pillow<13'
    PYTHONPATH=/tmp/pil12 python3 tests/data/gen_pil_expected.py --update tests/test_transforms.c

Pillow < 13 because Pillow 13 (PR #9549) runs the vertical resize pass first when the height shrinks more than
twice as much as the width, which moves some pixels by one level; data/resample.c follows the horizontal-first
order that Pillow used from 2016 to 12.x, the Pillow of the recipe's time.

Input images are not stored: both sides generate them with the same LCG (test_image() in the C test, lcg_image()
here), so only the sizes, seeds and the expected bytes (hex) are written out.
"""
import argparse
import re
import sys

import PIL
from PIL import Image, ImageEnhance
import timm
import timm.data.auto_augment as aa
import torchvision.transforms.functional as TF
from timm.data.transforms_factory import transforms_imagenet_eval

FILL = (124, 116, 104)  # timm hparams img_mean: round(255 * ImageNet mean)
RANGES = [(20, 230), (40, 200), (10, 250)]  # per-channel value ranges, so autocontrast has work to do


def lcg_image(w, h, c, seed):
    """HWC bytes from the LCG the C test uses: s = (s * 1103515245 + 12345) mod 2^31, v = lo + (s >> 8) % span."""
    s = seed & 0x7FFFFFFF
    out = bytearray()
    for _ in range(h):
        for _ in range(w):
            for ch in range(c):
                s = (s * 1103515245 + 12345) & 0x7FFFFFFF
                lo, hi = RANGES[ch]
                out.append(lo + (s >> 8) % (hi - lo + 1))
    mode = "RGB" if c == 3 else "L"
    return Image.frombytes(mode, (w, h), bytes(out))


def hexbytes(img):
    return img.tobytes().hex()


def cstr(s):
    """A long hex string as adjacent C string literals of 96 characters."""
    parts = [s[i : i + 96] for i in range(0, len(s), 96)] or [""]
    return "\n        ".join('"%s"' % p for p in parts)


FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
FILTER_C = {"bilinear": 0, "bicubic": 1}


def resample_cases():
    # (label, w, h, c, seed, out_w, out_h, filter, box or None, crop (i, j, h, w) or None)
    cases = [
        ("7x5 rgb -> 3x4 bilinear", 7, 5, 3, 1, 3, 4, "bilinear", None, None),
        ("5x7 rgb -> 11x9 bicubic", 5, 7, 3, 2, 11, 9, "bicubic", None, None),
        ("9x8 rgb box -> 4x5 bicubic", 9, 8, 3, 3, 4, 5, "bicubic", (1.5, 0.25, 7.75, 6.5), None),
        ("9x8 rgb box -> 12x10 bilinear", 9, 8, 3, 13, 12, 10, "bilinear", (0.5, 1.0, 8.25, 7.5), None),
        ("23x17 gray -> 5x4 bicubic", 23, 17, 1, 4, 5, 4, "bicubic", None, None),
        ("23x17 rgb -> 6x17 bilinear (horizontal only)", 23, 17, 3, 5, 6, 17, "bilinear", None, None),
        ("8x6 rgb -> 8x3 bicubic (vertical only)", 8, 6, 3, 6, 8, 3, "bicubic", None, None),
        ("23x17 rgb crop(3,5,11,9) -> 6x6 bilinear", 23, 17, 3, 7, 6, 6, "bilinear", None, (3, 5, 11, 9)),
        ("23x17 rgb crop(2,1,4,3) -> 7x7 bicubic", 23, 17, 3, 8, 7, 7, "bicubic", None, (2, 1, 4, 3)),
        ("40x30 rgb -> 7x5 bicubic", 40, 30, 3, 9, 7, 5, "bicubic", None, None),
        # the height shrinks far more than the width: Pillow 13 would run the vertical pass first here
        ("54x36 gray -> 85x6 bilinear (horizontal pass first)", 54, 36, 1, 10, 85, 6, "bilinear", None, None),
        ("30x90 rgb crop(5,2,80,25) -> 24x24 bicubic (horizontal first)", 30, 90, 3, 11, 24, 24, "bicubic", None,
         (5, 2, 80, 25)),
    ]
    rows = []
    for label, w, h, c, seed, ow, oh, f, box, crop in cases:
        im = lcg_image(w, h, c, seed)
        if crop:  # torchvision's resized_crop: crop at integers, then resize the crop
            out = TF.resized_crop(im, crop[0], crop[1], crop[2], crop[3], [oh, ow], FILTERS[f])
        else:
            out = im.resize((ow, oh), FILTERS[f], box=box)
        b = box or (0, 0, 0, 0)
        cr = crop or (0, 0, 0, 0)
        rows.append(
            '    {"%s",\n        %d, %d, %d, %d, %d, %d, %d, %d, {%r, %r, %r, %r}, {%d, %d, %d, %d},\n        %s},'
            % (label, w, h, c, seed, ow, oh, FILTER_C[f], box is not None, *[float(x) for x in b], *cr,
               cstr(hexbytes(out)))
        )
    return rows


def eval_cases():
    # (w, h, c, seed, size, crop_pct)
    cases = [(37, 29, 3, 21, 16, "0.875"), (29, 40, 3, 22, 16, "1.0"), (20, 31, 1, 23, 12, "0.9"),
             (30, 24, 3, 24, 16, "1.15"), (50, 35, 3, 25, 20, "0.8")]
    rows = []
    for w, h, c, seed, size, pct in cases:
        im = lcg_image(w, h, c, seed)
        t = transforms_imagenet_eval(size, interpolation="bicubic", crop_pct=float(pct))
        out = t.transforms[1](t.transforms[0](im))  # Resize, CenterCrop (before ToTensor and Normalize)
        assert out.size == (size, size)
        rows.append('    {%d, %d, %d, %d, %d, %sf,\n        %s},' % (w, h, c, seed, size, pct, cstr(hexbytes(out))))
    return rows


RA_ORDER = list(aa._RAND_INCREASING_TRANSFORMS)


def ra_apply(name, img, magnitude, negate, interp):
    """timm's AugmentOp.__call__ at a fixed magnitude and sign (no probability draw)."""
    aa._randomly_negate = (lambda v: -v) if negate else (lambda v: v)
    level_fn = aa.LEVEL_TO_ARG[name]
    args = level_fn(magnitude, dict(aa._HPARAMS_DEFAULT, img_mean=FILL)) if level_fn else ()
    return aa.NAME_TO_OP[name](img, *args, fillcolor=FILL, resample=FILTERS[interp])


def ra_cases():
    # (op name, magnitude, negate, interp, w, h, c, seed)
    W, H = 11, 9
    cases = [("AutoContrast", 9, 0, "bilinear"), ("Equalize", 9, 0, "bilinear"), ("Invert", 9, 0, "bilinear")]
    for neg in (0, 1):
        for f in ("bilinear", "bicubic"):
            cases += [("Rotate", 9, neg, f), ("ShearX", 9, neg, f), ("ShearY", 9, neg, f)]
    cases += [("Rotate", 4.7, 1, "bicubic"), ("Rotate", 2.25, 0, "bilinear")]
    cases += [("TranslateXRel", 9, 0, "bilinear"), ("TranslateXRel", 9, 1, "bicubic"),
              ("TranslateYRel", 9, 0, "bicubic"), ("TranslateYRel", 9, 1, "bilinear"),
              ("TranslateXRel", 2.3, 0, "bicubic"), ("TranslateYRel", 6.1, 1, "bilinear")]
    cases += [("PosterizeIncreasing", 9, 0, "bilinear"), ("PosterizeIncreasing", 3, 0, "bilinear"),
              ("SolarizeIncreasing", 9, 0, "bilinear"), ("SolarizeIncreasing", 4, 0, "bilinear"),
              ("SolarizeAdd", 9, 0, "bilinear"), ("SolarizeAdd", 2.5, 0, "bilinear")]
    for name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        cases += [(name, 9, 0, "bilinear"), (name, 9, 1, "bilinear"), (name, 3.3, 1, "bilinear")]
    rows = []
    seed = 100
    for name, m, neg, f in cases:
        seed += 1
        out = ra_apply(name, lcg_image(W, H, 3, seed), m, neg, f)
        rows.append('    {%d /* %s */, %r, %d, %d, %d, %d, 3, %d,\n        %s},'
                    % (RA_ORDER.index(name), name, float(m), neg, FILTER_C[f], W, H, seed, cstr(hexbytes(out))))
    # grayscale images: the ops whose PIL code takes an L image as it is
    for name, m, neg in [("AutoContrast", 9, 0), ("Equalize", 9, 0), ("ContrastIncreasing", 9, 1),
                         ("ContrastIncreasing", 9, 0), ("SharpnessIncreasing", 9, 0), ("SharpnessIncreasing", 9, 1),
                         ("BrightnessIncreasing", 5, 1), ("ColorIncreasing", 9, 0), ("SolarizeAdd", 9, 0)]:
        seed += 1
        out = ra_apply(name, lcg_image(W, H, 1, seed), m, neg, "bilinear")
        rows.append('    {%d /* %s */, %r, %d, 0, %d, %d, 1, %d,\n        %s},'
                    % (RA_ORDER.index(name), name, float(m), neg, W, H, seed, cstr(hexbytes(out))))
    return rows


def enhance_cases():
    # ColorJitter's factors through ImageEnhance directly: (kind 0 brightness, 1 contrast, 2 color, 3 sharpness)
    kinds = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color, ImageEnhance.Sharpness]
    cases = [(0, 0.6), (0, 1.37), (1, 0.61), (1, 1.4), (2, 0.75), (2, 1.2), (3, 0.0), (3, 2.5), (1, 0.0)]
    rows = []
    for k, (kind, factor) in enumerate(cases):
        seed = 300 + k
        out = kinds[kind](lcg_image(13, 7, 3, seed)).enhance(factor)
        rows.append('    {%d, %r, 13, 7, 3, %d,\n        %s},' % (kind, factor, seed, cstr(hexbytes(out))))
    return rows


def generate():
    out = ["/* BEGIN GENERATED by tests/data/gen_pil_expected.py with Pillow %s, timm %s: do not edit by hand. */"
           % (PIL.__version__, timm.__version__)]
    out.append("static const ResampleCase RESAMPLE_CASES[] = {")
    out += resample_cases()
    out.append("};")
    out.append("static const EvalCase EVAL_CASES[] = {")
    out += eval_cases()
    out.append("};")
    out.append("static const RaCase RA_CASES[] = {")
    out += ra_cases()
    out.append("};")
    out.append("static const EnhanceCase ENHANCE_CASES[] = {")
    out += enhance_cases()
    out.append("};")
    out.append("/* END GENERATED */")
    return "\n".join(out) + "\n"


def main():
    if tuple(int(x) for x in PIL.__version__.split(".")[:2]) >= (13, 0):
        sys.exit("Pillow %s resizes in another pass order; run with Pillow < 13 (see the docstring)" % PIL.__version__)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--update", metavar="C_FILE", help="replace the generated block in this file")
    args = ap.parse_args()
    text = generate()
    if not args.update:
        sys.stdout.write(text)
        return
    src = open(args.update).read()
    pat = re.compile(r"/\* BEGIN GENERATED.*?/\* END GENERATED \*/\n", re.S)
    if not pat.search(src):
        sys.exit("%s has no BEGIN GENERATED / END GENERATED block" % args.update)
    open(args.update, "w").write(pat.sub(lambda _: text, src, count=1))


if __name__ == "__main__":
    main()
