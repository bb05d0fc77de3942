#!/usr/bin/python3
"""Writes the seed corpora of the image, recipe, mask and server fuzz targets
(tests/fuzz/corpus/<target>/). Run once by hand when the seeds change; the
files are committed, and crash regressions are added next to them by name.

Usage: make-corpus.py [CORPUS_DIR]"""
import io
import json
import os
import struct
import sys
import zlib

from PIL import Image, PngImagePlugin

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pattern(w, h, mode):
    img = Image.new("RGBA", (w, h))
    img.putdata([((x * 37) % 256, (y * 53) % 256, ((x + y) * 11) % 256, 0 if (x + y) % 5 == 0 else 255)
                 for y in range(h) for x in range(w)])
    return img.convert(mode)


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ---- image: PNG, JPEG, WebP and things that are not ----
png_rgb = encode(pattern(13, 7, "RGB"), "PNG")
put("image", "png-rgb", png_rgb)
put("image", "png-rgba", encode(pattern(9, 9, "RGBA"), "PNG"))
put("image", "png-grey", encode(pattern(8, 5, "L"), "PNG"))
put("image", "png-grey-alpha", encode(pattern(5, 8, "LA"), "PNG"))
put("image", "png-palette", encode(pattern(16, 4, "RGB").convert("P", palette=Image.ADAPTIVE, colors=7), "PNG"))
put("image", "png-palette-trns", encode(pattern(6, 6, "RGBA").convert("P"), "PNG", transparency=0))
put("image", "png-1bit", encode(pattern(17, 3, "1"), "PNG"))
raw16 = b"".join(b"\0" + b"".join(struct.pack(">HHHH", x * 9000, y * 7000, 65535 - x * 999, 40000)
                                   for x in range(4)) for y in range(3))
put("image", "png-16bit-rgba", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 16, 6, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(raw16)) + chunk(b"IEND", b""))
put("image", "png-interlaced", encode(pattern(11, 11, "RGB"), "PNG", interlace=1))
put("image", "png-truncated", png_rgb[: len(png_rgb) // 2])
bad_crc = bytearray(png_rgb)
bad_crc[29] ^= 0xFF
put("image", "png-bad-crc", bytes(bad_crc))
# a header that claims 20000 × 20000 pixels over a few bytes of data
sig = b"\x89PNG\r\n\x1a\n"
ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
put("image", "png-huge-header", sig + ihdr + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
# complete chunks, but image data for 4 rows of 16
rows = b"".join(b"\0" + bytes([7] * 48) for y in range(4))
put("image", "png-short-idat", sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 16385, 1, 8, 0, 0, 0, 0))
put("image", "png-too-wide", sig + ihdr + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
put("image", "jpeg-baseline", encode(pattern(16, 9, "RGB"), "JPEG", quality=80))
put("image", "jpeg-progressive", encode(pattern(8, 8, "RGB"), "JPEG", progressive=True))
put("image", "jpeg-grey", encode(pattern(7, 3, "L"), "JPEG"))
put("image", "jpeg-cmyk", encode(pattern(4, 4, "CMYK"), "JPEG"))
exif = Image.Exif()
exif[0x0112] = 6   # rotated 90°
put("image", "jpeg-exif-rotated", encode(pattern(6, 3, "RGB"), "JPEG", exif=exif.tobytes()))
jpeg = encode(pattern(16, 16, "RGB"), "JPEG")
sof = jpeg.index(b"\xff\xc0")
put("image", "jpeg-huge-header", jpeg[:sof + 5] + struct.pack(">HH", 30000, 30000) + jpeg[sof + 9:])
lossless = encode(pattern(4, 4, "RGB"), "WEBP", lossless=True)
# VP8L: 14-bit width-1 and height-1 after the signature byte 0x2f
bits = (16383 - 1) | ((16383 - 1) << 14) | (lossless[25] >> 4 << 28)
put("image", "webp-huge-header", lossless[:21] + struct.pack("<I", bits) + lossless[25:])
put("image", "jpeg-truncated", jpeg[: len(jpeg) * 2 // 3])
put("image", "webp-lossy", encode(pattern(10, 6, "RGB"), "WEBP", quality=50))
put("image", "webp-lossless", encode(pattern(6, 10, "RGBA"), "WEBP", lossless=True))
put("image", "webp-alpha", encode(pattern(8, 8, "RGBA"), "WEBP", quality=70))
put("image", "gif", encode(pattern(4, 4, "P"), "GIF"))
put("image", "bmp", encode(pattern(4, 4, "RGB"), "BMP"))
put("image", "svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
put("image", "empty-ish", b"\x89PNG")

# ---- recipe: PNG text chunks ----
recipe = {
    "reverie:kind": "generate", "reverie:prompt": "a red circle on a blue background",
    "reverie:negative_prompt": "blurry", "reverie:seed": "42", "reverie:width": "64",
    "reverie:height": "64", "reverie:prior_steps": "5", "reverie:prior_guidance": "4",
    "reverie:decoder_steps": "6", "reverie:decoder_guidance": "4", "reverie:scheduler": "ddpm",
    "reverie:model": "reverie-tiny", "reverie:model_hash": "0123456789abcdef",
    "reverie:engine_version": "0.1.0", "reverie:created": "1700000000",
}
info = PngImagePlugin.PngInfo()
for k, v in recipe.items():
    info.add_text(k, v)
put("recipe", "text", encode(pattern(2, 2, "RGB"), "PNG", pnginfo=info))
info = PngImagePlugin.PngInfo()
for k, v in recipe.items():
    info.add_text(k, v, zip=True)
put("recipe", "ztxt", encode(pattern(2, 2, "RGB"), "PNG", pnginfo=info))
info = PngImagePlugin.PngInfo()
for i, (k, v) in enumerate(recipe.items()):
    info.add_itxt(k, v + " ✓ ünïcode", lang="en", tkey="t", zip=i % 2 == 0)
put("recipe", "itxt", encode(pattern(2, 2, "RGB"), "PNG", pnginfo=info))
edit = dict(recipe, **{"reverie:kind": "inpaint", "reverie:strength": "0.5", "reverie:feather": "4",
                       "reverie:source_sha256": "ab" * 32, "reverie:mask_sha256": "cd" * 32,
                       "reverie:mask_png_base64": "iVBORw0KGgo=", "reverie:mask_mode": "alpha",
                       "reverie:mix": '[{"prompt": "a", "weight": 0.5}]',
                       "reverie:seed": "18446744073709551615", "reverie:width": "-5",
                       "reverie:prior_guidance": "nan"})
info = PngImagePlugin.PngInfo()
for k, v in edit.items():
    info.add_text(k, v)
put("recipe", "edit-odd-values", encode(pattern(2, 2, "RGB"), "PNG", pnginfo=info))
body = sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
put("recipe", "latin1-and-bad-chunks",
    body + chunk(b"tEXt", b"reverie:kind\0gen\xe9rate") + chunk(b"zTXt", b"reverie:prompt\0\0" + b"not zlib")
    + chunk(b"iTXt", b"reverie:model\0\1\0en\0\0" + zlib.compress("zipped ✓".encode()))
    + chunk(b"iTXt", b"broken\0\0") + chunk(b"tEXt", b"\0no key") + chunk(b"tEXt", b"k" * 90 + b"\0long key")
    + struct.pack(">I", 0xFFFFFFF0) + b"tEXt")
put("recipe", "zlib-bomb", body + chunk(b"zTXt", b"reverie:prompt\0\0" + zlib.compress(b"a" * (8 << 20), 9))
    + chunk(b"tEXt", b"reverie:kind\0generate") + chunk(b"IEND", b""))
put("recipe", "not-png", b"GIF89a" + b"\0" * 20)

# ---- mask: mode/channels byte, image w-1, h-1, mask w-1, h-1, pixels ----
put("mask", "grey-half", bytes([1, 15, 15, 15, 15]) + bytes([255] * 128 + [0] * 128))
put("mask", "alpha-rgba", bytes([2 | 8, 7, 7, 7, 7]) + bytes([0, 0, 0, 0, 9, 9, 9, 255] * 32))
put("mask", "auto-rgba-opaque", bytes([0 | 8, 7, 3, 7, 3]) + bytes([200, 10, 10, 255, 20, 20, 20, 255]))
put("mask", "image-alpha", bytes([3 | 4 | 16, 9, 9, 0, 0]) + bytes([10, 20, 30, 0, 40, 50, 60, 255, 1, 2, 3, 4]))
put("mask", "scaled-mask", bytes([1, 99, 49, 9, 4]) + bytes([255, 255, 255, 0, 0, 0]))
put("mask", "wrong-aspect", bytes([1, 63, 63, 31, 7]) + bytes([255, 0]))
put("mask", "all-white", bytes([1, 3, 3, 3, 3]) + bytes([255]))
put("mask", "no-alpha", bytes([2, 3, 3, 3, 3]) + bytes([0, 255]))
put("mask", "extreme", bytes([1, 255, 0, 255, 0]) + bytes([255, 255, 255, 0, 0, 0]))

# ---- server-json: generation bodies ----
jsons = {
    "minimal": {"prompt": "a red circle"},
    "full": {"prompt": "a red circle", "n": 2, "size": "512x512", "response_format": "b64_json",
             "model": "dall-e-2", "user": "u", "quality": "standard", "stream": False, "seed": 7,
             "steps": 4, "prior_steps": 3, "guidance": 4.5, "prior_guidance": 1,
             "negative_prompt": "blue", "scheduler": "ddim"},
    "nulls": {"prompt": "x", "n": None, "size": None, "seed": None},
    "custom-size": {"prompt": "x", "size": "640x192", "model": "reverie-tiny", "n": 2.0},
    "bad-types": {"prompt": 5, "n": "2"},
    "bad-values": {"prompt": "x", "n": 11, "size": "100x100", "seed": -1, "steps": 0},
    "unknown": {"prompt": "x", "style": "vivid"},
    "unicode": {"prompt": "ünïcödé ✓ \u0000 emoji 🎨", "negative_prompt": ""},
    "long": {"prompt": "x" * 1001},
    "blank": {"prompt": "   \t"},
    "nested": {"prompt": ["a", {"b": [1, 2]}]},
    "edit-fields": {"prompt": "x", "image": "abc", "mask": None},
    "big-seed": {"prompt": "x", "seed": 9007199254740992, "guidance": 1e308},
}
for name, j in jsons.items():
    put("server-json", name, json.dumps(j, ensure_ascii=name != "unicode").encode())
put("server-json", "not-object", b"[1, 2, 3]")
put("server-json", "deep", b"[" * 40 + b"]" * 40)
put("server-json", "broken", b'{"prompt": "x", ')
put("server-json", "duplicate-keys", b'{"prompt": "a", "prompt": "b", "n": 1, "n": 2}')


# ---- server-multipart: kind byte (0 edit, 1 variation), Content-Type line, body ----
def form(parts, boundary="XyZ123"):
    out = b""
    for name, value, filename in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        disp = 'form-data; name="%s"' % name
        if filename:
            disp += '; filename="%s"' % filename
        out += b"Content-Disposition: " + disp.encode() + b"\r\n"
        if filename:
            out += b"Content-Type: image/png\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def mp(kind, parts, boundary="XyZ123", ctype=None):
    ctype = ctype or "multipart/form-data; boundary=" + boundary
    return bytes([kind]) + ctype.encode() + b"\n" + form(parts, boundary)


rgba = encode(pattern(8, 8, "RGBA"), "PNG")
mask = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
mask.paste((0, 0, 0, 0), (2, 2, 6, 6))
mask_png = encode(mask, "PNG")
rgb = encode(pattern(8, 8, "RGB"), "PNG")
put("server-multipart", "edit", mp(0, [("image", rgba, "a.png"), ("mask", mask_png, "m.png"),
                                       ("prompt", b"a cat", None), ("n", b"2", None),
                                       ("size", b"256x256", None), ("response_format", b"b64_json", None)]))
put("server-multipart", "edit-image-alpha", mp(0, [("image[]", rgba, "a.png"), ("prompt", b"x", None),
                                                   ("seed", b"12", None), ("guidance", b"3.5", None),
                                                   ("stream", b"true", None)]))
put("server-multipart", "edit-no-alpha", mp(0, [("image", rgb, "a.png"), ("prompt", b"x", None)]))
put("server-multipart", "edit-size-mismatch", mp(0, [("image", rgba, "a.png"), ("prompt", b"x", None),
                                                     ("mask", encode(pattern(4, 4, "RGBA"), "PNG"), "m.png")]))
put("server-multipart", "variation", mp(1, [("image", rgb, "a.png"), ("n", b"1", None),
                                            ("scheduler", b"dpmpp", None), ("steps", b"3", None)]))
put("server-multipart", "variation-jpeg", mp(1, [("image", encode(pattern(8, 8, "RGB"), "JPEG"), "a.jpg")]))
put("server-multipart", "duplicate", mp(1, [("image", rgb, "a.png"), ("n", b"1", None), ("n", b"2", None)]))
put("server-multipart", "bad-values", mp(0, [("image", rgba, "a.png"), ("prompt", b"\xff\xfe", None),
                                             ("n", b" 3", None), ("guidance", b"inf", None)]))
put("server-multipart", "quoted-boundary", mp(1, [("image", rgb, "a.png")], boundary="a b:c",
                                              ctype='multipart/form-data; boundary="a b:c"'))
put("server-multipart", "no-boundary", mp(1, [("image", rgb, "a.png")], ctype="multipart/form-data"))
put("server-multipart", "wrong-type", mp(1, [("image", rgb, "a.png")], ctype="application/json"))
put("server-multipart", "truncated", mp(0, [("image", rgba, "a.png"), ("prompt", b"x", None)])[:200])
put("server-multipart", "no-headers", bytes([1]) + b"multipart/form-data; boundary=B\n--B\r\nimage\r\n--B--\r\n")
