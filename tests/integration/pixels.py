"""pixels.py: just enough image I/O for the integration tests, independent of Vellum's code:
a PNG reader (zlib + the five PNG filters), a PNM reader/writer, JPEG via Debian's djpeg, and
reference renderings via opj_decompress. Images are (width, height, channels, bytes)."""
import os
import struct
import subprocess
import tempfile
import zlib


def read_pnm(path):
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1
    magic, w, h, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    ch = {b"P5": 1, b"P6": 3}[magic]
    if maxval != 255:
        raise ValueError("only 8-bit PNM")
    return w, h, ch, data[pos:pos + w * h * ch]


def write_pnm(path, w, h, ch, px):
    with open(path, "wb") as f:
        f.write(b"%s\n%d %d\n255\n" % (b"P5" if ch == 1 else b"P6", w, h))
        f.write(bytes(px))


def write_png(path, w, h, ch, data):
    """An 8-bit PNG (no filtering), written by the test, not by Vellum."""
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    raw = b"".join(b"\0" + data[y * w * ch:(y + 1) * w * ch] for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_png(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr, chunks = 8, b"", None, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        chunks.append(kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or interlace:
        raise ValueError("test reader handles 8-bit non-interlaced PNG only")
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * ch
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return w, h, ch, bytes(out), chunks


def read_jpeg(data):
    """Decode with Debian's djpeg (libjpeg-turbo-progs), not with Vellum."""
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(data)
        f.flush()
        out = f.name + ".pnm"
        subprocess.run(["djpeg", "-pnm", "-outfile", out, f.name], check=True)
        try:
            return read_pnm(out)
        finally:
            os.unlink(out)


def with_orientation(jpeg, o):
    """The JPEG bytes with an EXIF APP1 segment (IFD0 holding only Orientation = o) after SOI."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, o, 0) + \
        struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def djpeg_reference(src, reduce=0):
    """djpeg's own decode of the JPEG file src, DCT-scaled by 1/2^reduce."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ref.pnm")
        subprocess.run(["djpeg", "-pnm", "-scale", "1/%d" % (1 << reduce), "-outfile", out, src],
                       check=True)
        return read_pnm(out)


def opj_reference(src, reduce=0, area=None):
    """opj_decompress's own decode of src at a reduction level and (full-res) area x0,y0,x1,y1."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ref.ppm")
        cmd = ["opj_decompress", "-i", src, "-o", out, "-r", str(reduce), "-quiet"]
        if area:
            cmd += ["-d", "%d,%d,%d,%d" % area]
        r = subprocess.run(cmd, capture_output=True)
        if not os.path.exists(out):
            out = out[:-4] + ".pgm"
            cmd[cmd.index("-o") + 1] = out
            subprocess.run(cmd, check=True, capture_output=True)
        return read_pnm(out)


def crop(img, x, y, w, h):
    iw, ih, ch, px = img[:4]
    rows = [px[((y + r) * iw + x) * ch:((y + r) * iw + x + w) * ch] for r in range(h)]
    return w, h, ch, b"".join(rows)


def box_downscale(img, ow, oh):
    """Exact area-average (what any good downscaler approaches): the reference for resizing."""
    iw, ih, ch, px = img[:4]
    sx, sy = iw / ow, ih / oh
    out = bytearray(ow * oh * ch)

    def weights(n_out, n_in, s):
        table = []
        for o in range(n_out):
            a, b = o * s, (o + 1) * s
            ws = []
            for i in range(int(a), min(n_in, int(b) + 1)):
                cover = min(b, i + 1) - max(a, i)
                if cover > 1e-9:
                    ws.append((i, cover))
            table.append(ws)
        return table
    wx, wy = weights(ow, iw, sx), weights(oh, ih, sy)
    for oy in range(oh):
        for ox in range(ow):
            for c in range(ch):
                acc = tot = 0.0
                for iy, cy in wy[oy]:
                    for ix, cx in wx[ox]:
                        acc += px[(iy * iw + ix) * ch + c] * cx * cy
                        tot += cx * cy
                out[(oy * ow + ox) * ch + c] = int(acc / tot + 0.5)
    return ow, oh, ch, bytes(out)


def nearest_downscale(img, ow, oh):
    """Nearest-neighbour: what a bad downscaler does; tests show Vellum beats it."""
    iw, ih, ch, px = img[:4]
    out = bytearray()
    for oy in range(oh):
        sy = min(ih - 1, int((oy + 0.5) * ih / oh))
        for ox in range(ow):
            sx = min(iw - 1, int((ox + 0.5) * iw / ow))
            out += px[(sy * iw + sx) * ch:(sy * iw + sx + 1) * ch]
    return ow, oh, ch, bytes(out)


def diff(a, b):
    """(max abs difference, mean abs difference) of two same-shaped images; None if shapes differ."""
    if a[:3] != b[:3]:
        return None
    pa, pb = a[3], b[3]
    d = [abs(x - y) for x, y in zip(pa, pb)]
    return max(d), sum(d) / len(d)


def to_gray(img):
    w, h, ch, px = img[:4]
    if ch == 1:
        return img[:4]
    return w, h, 1, bytes((299 * px[i] + 587 * px[i + 1] + 114 * px[i + 2] + 500) // 1000
                          for i in range(0, len(px), ch))
