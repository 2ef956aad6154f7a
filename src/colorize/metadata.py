"""What a colorized photo keeps of its source's metadata, and what it says of itself.

- :func:`kept_metadata` reads, from a photo as opened, what its colorized version keeps: the print size (dpi), the
  EXIF description (date, camera, author, copyright, GPS), the catalogue entry (XMP: :func:`kept_xmp`; IPTC-IIM:
  :func:`kept_iptc`), less what is not true of a colorized image, and with the marks that say it is one
  (:data:`PROVENANCE`: this program as its Software and CreatorTool, IPTC's digital source type).
- :func:`save_options` turns that into Pillow's ``save`` options for a format (8-bit files);
  :func:`png16_chunks`, :func:`tiff16_tags` and :func:`append_sub_ifds` into what the 16-bit writers of
  :mod:`colorize.io` (pypng, tifffile) write.

Metadata is kept where it can be read and written again: a photo is never refused for it.
"""

from __future__ import annotations

import io
import os
import re
import struct

from PIL import ExifTags, Image

from colorize import __version__

_JPEG_EXIF_BYTES = 65_533  # a JPEG marker segment's 65,535 bytes less its length field (Pillow refuses more)
_JPEG_XMP_BYTES = _JPEG_EXIF_BYTES - len(b"http://ns.adobe.com/xap/1.0/\0")  # the segment names its namespace
_JPEG_SEGMENT_BYTES = 2 + 2 + _JPEG_EXIF_BYTES  # a whole marker segment: marker, length, at most 65,533 bytes
_PNG_XMP_KEY = "XML:com.adobe.xmp"  # an iTXt chunk's keyword for XMP
_TIFF_XMP_TAG = 700  # XMLPacket, bytes


# What of a photo's EXIF its colorized version keeps: the description of the photo (who, when, where, what with),
# not the layout of the file it came in (a TIFF's strips, its thumbnail) nor what the colorizing changes
_KEPT_TAGS = {ExifTags.Base[name] for name in (
    "ImageDescription", "Make", "Model", "DateTime", "Artist", "Copyright", "HostComputer", "DocumentName",
    "PageName", "Rating", "RatingPercent", "XPTitle", "XPComment", "XPAuthor", "XPKeywords", "XPSubject")}
_KEPT_IFDS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)
_CHANGED_EXIF = {ExifTags.Base[name] for name in (  # not true of the output (a new image, sRGB, maybe turned upright)
    "ImageUniqueID", "ColorSpace", "ExifImageWidth", "ExifImageHeight", "ComponentsConfiguration",
    "CompressedBitsPerPixel")}


def kept_metadata(img: Image.Image) -> dict:
    """What a colorized version of ``img`` (as opened, before :func:`colorize.io.upright`) keeps of its metadata,
    for :func:`colorize.io.save_image` (:func:`save_options`): ``dpi`` (its print size; turned with the photo)
    and ``exif``: the description (date, camera, author, copyright, GPS, ...), without the orientation (applied:
    a viewer would turn it twice), the thumbnail (of the gray photo) and the color space (the output is sRGB),
    with this program as its Software; ``xmp``: the XMP packet (captions, keywords, credits, rights), less the
    same things, with the marks of a colorized image (:func:`kept_xmp`); ``iptc``: the IPTC-IIM records, the
    older catalogue (:func:`kept_iptc`). Every colorized photo has ``exif`` and ``xmp``, which say it is one (in
    the formats that hold them: not BMP).

    Metadata is kept where it can be read and written again: a photo is never refused for it. EXIF that Pillow reads
    but cannot write back (a GPS tag holding text) is left out whole, XMP that cannot be parsed or written leaves the
    marks alone, IPTC that is not well formed is left out."""
    kept: dict = {}
    try:
        source = img.getexif()
        turned = source.get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
        dpi = tuple(float(v) for v in img.info.get("dpi", ()))  # TIFF's are rationals
        if len(dpi) == 2 and all(0 < v < 1e6 for v in dpi):
            kept["dpi"] = dpi[::-1] if turned else dpi
        exif = Image.Exif()
        for tag, value in source.items():
            if tag in _KEPT_TAGS:
                exif[tag] = value
        for ifd in _KEPT_IFDS:
            entries = {tag: value for tag, value in source.get_ifd(ifd).items() if tag not in _CHANGED_EXIF}
            if entries:
                exif.get_ifd(ifd).update(entries)
        exif[ExifTags.Base.Software] = SOFTWARE  # what made this image (the scanner's software made the gray one)
        kept["exif"] = exif.tobytes()
    except Exception:  # Pillow's parsers and writer raise many kinds on damaged EXIF
        kept["exif"] = _software_exif()
    packet = img.info.get("xmp")  # JPEG, PNG, WebP, TIFF, AVIF
    kept["xmp"] = kept_xmp(packet if isinstance(packet, (bytes, str)) else None)
    try:
        if (records := _iptc_of(img)) and (iptc := kept_iptc(records)):
            kept["iptc"] = iptc
    except Exception:  # a TIFF directory Pillow cannot read back
        pass
    return kept


# A colorized version says so, in the terms catalogues read: its colors were guessed by a trained model, not seen
# (historians' concern, and IPTC's: a capture combined with a trained model's output); the EXIF's Software names
# this program (kept_metadata), the XMP the same and the digital source type (kept_xmp).
SOFTWARE = f"colorize {__version__}"
_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
PROVENANCE = {
    ("http://ns.adobe.com/xap/1.0/", "CreatorTool"): SOFTWARE,
    (_IPTC_EXT, "DigitalSourceType"):
        "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
}
_PROVENANCE_PREFIXES = (("xmp", "http://ns.adobe.com/xap/1.0/"), ("Iptc4xmpExt", _IPTC_EXT))


def _software_exif() -> bytes:
    """An EXIF that says only what made the image: a colorized photo's where its own cannot be kept."""
    exif = Image.Exif()
    exif[ExifTags.Base.Software] = SOFTWARE
    return exif.tobytes()


# What of a photo's XMP its colorized version keeps: all of it (title, caption, keywords, people, places, credit,
# rights, an archive's own fields) but what is not true of the output, by namespace: its layout and size (the
# orientation is applied), its gray color mode and profile, its identity (the output is a new document; where it
# came from stays), its thumbnail, and Camera Raw's develop settings, all of them: Adobe's tools read those from a
# JPEG's or TIFF's XMP, a conversion to black and white among them, made for the gray scan; and what PROVENANCE
# replaces.
_XMP_ALL = None
_XMP_DROPPED: dict[str, set[str] | None] = {
    "http://ns.adobe.com/tiff/1.0/": {
        "Orientation", "ImageWidth", "ImageLength", "BitsPerSample", "PhotometricInterpretation", "SamplesPerPixel",
        "Compression", "PlanarConfiguration", "YCbCrSubSampling", "YCbCrPositioning"},
    "http://ns.adobe.com/exif/1.0/": {
        "PixelXDimension", "PixelYDimension", "ColorSpace", "ComponentsConfiguration", "CompressedBitsPerPixel"},
    "http://ns.adobe.com/photoshop/1.0/": {"ColorMode", "ICCProfile"},
    "http://ns.adobe.com/xap/1.0/mm/": {"InstanceID", "DocumentID"},
    "http://ns.adobe.com/xap/1.0/": {"Thumbnails", "CreatorTool"},
    "http://ns.adobe.com/xmp/note/": {"HasExtendedXMP"},  # the extended packet (other JPEG segments) is not read
    "http://ns.adobe.com/camera-raw-settings/1.0/": _XMP_ALL,
    _IPTC_EXT: {"DigitalSourceType"},  # the scan's ("print", "negativeFilm"): the output's is PROVENANCE's
}
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_XPACKET = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n', b'\n<?xpacket end="w"?>')
_EMPTY_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta>')


def kept_xmp(packet: bytes | str | None) -> bytes:
    """The XMP packet of a colorized version of a photo whose packet is ``packet`` (None: it has none): all of it
    but ``_XMP_DROPPED``, and the marks that say it is colorized (:data:`PROVENANCE`), as UTF-8 in an ``xpacket``
    wrapper. A packet that is not well-formed XML is not copied: the output has the marks alone.

    Parsed by defusedxml, which refuses a DTD's entities (an XMP packet has none: a "billion laughs" file is
    refused, not expanded); written by ElementTree under the packet's own namespace prefixes."""
    import xml.etree.ElementTree as ET

    from defusedxml import ElementTree as SafeET

    data = packet.encode("utf-8") if isinstance(packet, str) else packet or _EMPTY_XMP

    def parse(data: bytes) -> tuple[dict, ET.Element]:
        prefixes = {prefix: uri for _, (prefix, uri) in SafeET.iterparse(io.BytesIO(data), events=("start-ns",))}
        return prefixes, SafeET.fromstring(data)

    try:
        try:
            prefixes, root = parse(data)
        except SafeET.ParseError:  # an 8-bit packet padded out with NULs (a UTF-16 one ends in a NUL byte: tried first)
            prefixes, root = parse(data.rstrip(b"\0 \t\r\n"))
    except Exception:  # malformed XML, a DTD, a wrong encoding: defusedxml's and expat's errors are many
        prefixes, root = {}, SafeET.fromstring(_EMPTY_XMP)

    def dropped(name: str) -> bool:
        uri, _, local = name[1:].partition("}") if name.startswith("{") else ("", "", name)
        names = _XMP_DROPPED.get(uri, set())
        return names is _XMP_ALL or local in names

    rdf = root if root.tag == _RDF + "RDF" else root.find(_RDF + "RDF")
    if rdf is None:  # XML, but not XMP's shape: not copied
        return kept_xmp(None)
    for description in rdf.findall(_RDF + "Description"):  # the photo's own; nested ones describe other documents
        for name in [n for n in description.attrib if dropped(n)]:
            del description.attrib[name]
        for child in [c for c in description if dropped(c.tag)]:
            description.remove(child)
    top = rdf.find(_RDF + "Description")
    if top is None:
        top = ET.SubElement(rdf, _RDF + "Description", {_RDF + "about": ""})
    for (uri, name), value in PROVENANCE.items():
        top.set(f"{{{uri}}}{name}", value)
    for prefix, uri in (*prefixes.items(), *_PROVENANCE_PREFIXES):
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            try:  # ElementTree names namespaces by a global table: the packet's own prefixes are put in it
                ET.register_namespace(prefix, uri)
            except ValueError:
                pass
    try:
        return _XPACKET[0] + ET.tostring(root, encoding="utf-8", xml_declaration=False) + _XPACKET[1]
    except RecursionError:  # nesting deeper than ElementTree's writer recurses: not copied
        return kept_xmp(None)


# IPTC-IIM, the older catalogue many archives' JPEGs and TIFFs still carry (caption, keywords, by-line, credit,
# copyright, dates, places): its envelope and application records are kept but for the image type ("1M": one
# component, monochrome) and orientation; the later records (the newsphoto's pixel layout, a preview) are not.
_IPTC_DROPPED = {(2, 130), (2, 131)}
_IPTC_KEPT_RECORDS = (1, 2)
_IPTC_RESOURCE = 0x0404  # the Photoshop image resource that holds it in a JPEG's APP13 segment
_TIFF_IPTC_TAG = 33723  # IPTC-NAA: the same records as a TIFF tag


def _iptc_of(img: Image.Image) -> bytes | None:
    """A photo's IPTC-IIM records: a JPEG's Photoshop resource, a TIFF's tag. Photoshop declares the tag as 32-bit
    words, of which Pillow's value keeps the first alone: its bytes as the file holds them are read instead, where
    Pillow's own IPTC reader (``IptcImagePlugin.getiptcinfo``) reads them."""
    resources = img.info.get("photoshop")
    if isinstance(resources, dict) and isinstance(resources.get(_IPTC_RESOURCE), bytes):
        return resources[_IPTC_RESOURCE]
    raw = getattr(getattr(img, "tag_v2", None), "_tagdata", {}).get(_TIFF_IPTC_TAG)
    return raw if isinstance(raw, bytes) else None


def kept_iptc(data: bytes) -> bytes | None:
    """The IPTC-IIM datasets a colorized version of a photo keeps (``_IPTC_DROPPED`` and later records left out);
    None when no catalogue field is left or the records are not well formed (they are then not copied)."""
    kept, at = [], 0
    while at < len(data):
        if data[at] != 0x1C:  # every dataset starts with its tag marker; what follows the last is padding
            if data[at:].strip(b"\0"):
                return None
            break
        if at + 5 > len(data):
            return None
        record, dataset, size, head = data[at + 1], data[at + 2], int.from_bytes(data[at + 3:at + 5], "big"), 5
        if size & 0x8000:  # an extended dataset: its length in the next (size & 0x7FFF) bytes
            head += size & 0x7FFF
            size = int.from_bytes(data[at + 5:at + head], "big")
        end = at + head + size
        if end > len(data):
            return None
        if record in _IPTC_KEPT_RECORDS and (record, dataset) not in _IPTC_DROPPED:
            kept.append((record, dataset, data[at:end]))
        at = end
    if not any(record == 2 and dataset != 0 for record, dataset, _ in kept):  # 2:00 is the record's version
        return None
    return b"".join(raw for _, _, raw in kept)


def _photoshop_segment(iptc: bytes) -> bytes:
    """A JPEG APP13 segment that holds ``iptc`` as Photoshop's IPTC-NAA image resource (no name; data padded to
    an even length), as Photoshop, Lightroom and exiftool write it."""
    resource = b"8BIM" + struct.pack(">HHI", _IPTC_RESOURCE, 0, len(iptc)) + iptc + bytes(len(iptc) % 2)
    body = b"Photoshop 3.0\0" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


# formats whose Pillow writers take an XMP packet as the ``xmp`` option (HEIF: with the heif extra)
_XMP_OPTION = ("JPEG", "WEBP", "AVIF", "HEIF")


def save_options(fmt: str, kept: dict) -> dict:
    """Pillow's ``save`` options that write ``kept`` (:func:`kept_metadata`) into a file of format ``fmt`` (a Pillow
    format name), where the format holds it: the dpi; the EXIF; the catalogue, an XMP packet (:func:`kept_xmp`) in
    JPEG, PNG, WebP, TIFF, AVIF and HEIF and IPTC-IIM records (:func:`kept_iptc`) in JPEG and TIFF (elsewhere the
    XMP, which tools write beside it, carries the same fields); none of these in BMP. What passes a JPEG segment's
    size is left out (Extended XMP is not written), but for the marks of a colorized photo: the EXIF's Software,
    the XMP's :data:`PROVENANCE`."""
    options = {k: v for k, v in kept.items() if k in ("dpi", "exif")}
    xmp, iptc = kept.get("xmp"), kept.get("iptc")
    if fmt == "JPEG":
        if len(options.get("exif", b"")) > _JPEG_EXIF_BYTES:
            options["exif"] = _software_exif()  # a PNG's or TIFF's long description: past what a JPEG holds
        xmp = xmp if not xmp or len(xmp) <= _JPEG_XMP_BYTES else kept_xmp(None)
        iptc = iptc if iptc and len(_photoshop_segment(iptc)) <= _JPEG_SEGMENT_BYTES else None
    if xmp and fmt in _XMP_OPTION:
        options["xmp"] = xmp
    if iptc and fmt == "JPEG":  # Pillow writes these bytes as they are, after its own segments (its ICC's way)
        options["extra"] = _photoshop_segment(iptc)
    if xmp and fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt(_PNG_XMP_KEY, xmp.decode("utf-8"))
        options["pnginfo"] = info
    if (xmp or iptc) and fmt == "TIFF":  # tags of the first IFD, which Pillow writes from the EXIF (not a tiffinfo,
        tags = Image.Exif()  # which would replace it)
        tags.load(options.get("exif") or b"")
        if xmp:
            tags[_TIFF_XMP_TAG] = xmp
        if iptc:
            tags[_TIFF_IPTC_TAG] = iptc
        options["exif"] = tags.tobytes()
    return options


def png16_chunks(kept: dict) -> list[tuple[bytes, bytes]]:
    """The PNG chunks (type, data) a 16-bit PNG writer puts before the pixels for ``kept``: the EXIF (eXIf) and the
    XMP (iTXt: keyword, uncompressed, no language, no translated keyword, UTF-8 text)."""
    exif, xmp = kept.get("exif"), kept.get("xmp")
    chunks = []
    if exif:
        chunks.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    if xmp:
        chunks.append((b"iTXt", _PNG_XMP_KEY.encode("latin-1") + b"\0\0\0\0\0" + xmp))
    return chunks


def _kept_exif(kept: dict) -> Image.Exif:
    """``kept``'s EXIF (:func:`kept_metadata`) as Pillow holds it."""
    exif = Image.Exif()
    exif.load(kept.get("exif") or b"")
    return exif


def tiff16_tags(kept: dict) -> list[tuple]:
    """tifffile's ``extratags`` for ``kept``: the EXIF's first IFD (description, camera, date, author, copyright,
    ...), the XMP and the IPTC (the Exif and GPS IFDs are appended after the write: :func:`append_sub_ifds`)."""
    tags = []
    for tag, value in _kept_exif(kept).items():
        if tag in _KEPT_IFDS:
            continue
        if isinstance(value, str):
            tags.append((tag, "s", 0, value, True))
        elif isinstance(value, bytes):  # XPTitle, XPComment, ...: UCS-2 text as bytes
            tags.append((tag, "B", len(value), value, True))
        elif isinstance(value, int) and 0 <= value < 1 << 32:
            tags.append((tag, "I", 1, value, True))
    return tags + [(tag, "B", len(data), data, True) for tag, data in
                   ((_TIFF_XMP_TAG, kept.get("xmp")), (_TIFF_IPTC_TAG, kept.get("iptc"))) if data]


def append_sub_ifds(path: str, kept: dict) -> None:
    """Add ``kept``'s EXIF Exif and GPS IFDs (date taken, GPS, ...) to the classic little-endian TIFF tifffile wrote
    with :func:`tiff16_tags` (it writes no sub-IFDs, nor their pointers): each appended as Pillow's own TIFF writer
    serializes it, then a copy of the first IFD with the pointers among its entries, which the header is made to
    point at (the old one is left, unread: a few hundred bytes)."""
    from PIL import TiffImagePlugin

    exif = _kept_exif(kept)
    subs = [tag for tag in _KEPT_IFDS if exif.get_ifd(tag)]
    if not subs:
        return
    with open(path, "r+b") as f:
        head = f.read(8)
        if head[:4] != b"II*\0":
            raise ValueError("not the classic little-endian TIFF tifffile writes")
        f.seek(int.from_bytes(head[4:], "little"))
        count = int.from_bytes(f.read(2), "little")
        entries = {int.from_bytes(e[:2], "little"): e for e in (f.read(12) for _ in range(count))}
        following = f.read(4)  # the next IFD's offset (0: none)

        def append(data: bytes) -> int:
            end = f.seek(0, os.SEEK_END)
            f.write(bytes(end % 2))  # IFDs start on a word boundary
            f.write(data)
            return end + end % 2

        for tag in subs:
            ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head, group=tag)
            for key, value in exif.get_ifd(tag).items():
                ifd[key] = value
            end = f.seek(0, os.SEEK_END)
            at = append(ifd.tobytes(end + end % 2))
            entries[tag] = struct.pack("<HHII", tag, 4, 1, at)  # LONG: the sub-IFD's offset
        first = append(struct.pack("<H", len(entries)) + b"".join(entries[t] for t in sorted(entries)) + following)
        f.seek(4)
        f.write(first.to_bytes(4, "little"))
