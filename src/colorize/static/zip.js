"use strict";

/*
 * A store-only ZIP writer: JPEG and PNG are already compressed, so the entries are stored as they are.
 * Plain ZIP (no ZIP64): up to 65535 entries and 4 GiB in all, far beyond a page of photos.
 *
 *   const blob = await ColorizeZip.build([{ name: "a_color.jpg", blob, date: new Date() }]);
 */
const ColorizeZip = (() => {
  const CRC_TABLE = new Uint32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });

  /** CRC-32 (IEEE 802.3), as ZIP stores it. */
  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  /** MS-DOS time and date words (2-second resolution, years from 1980). */
  function dosDateTime(d) {
    const time = (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1);
    const date = ((Math.max(d.getFullYear(), 1980) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate();
    return [time, date];
  }

  const UTF8_NAMES = 0x0800; // general purpose flag bit 11: names are UTF-8
  const VERSION = 20; // 2.0: the oldest version that stores folders and plain entries

  /** Build a ZIP Blob from [{name, blob, date?}] (names must be unique). */
  async function build(files) {
    const parts = [];
    const central = [];
    let offset = 0;
    for (const file of files) {
      const data = new Uint8Array(await file.blob.arrayBuffer());
      const name = new TextEncoder().encode(file.name);
      const crc = crc32(data);
      const [time, date] = dosDateTime(file.date || new Date());

      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true); // local file header signature
      local.setUint16(4, VERSION, true);
      local.setUint16(6, UTF8_NAMES, true);
      local.setUint16(8, 0, true); // method: stored
      local.setUint16(10, time, true);
      local.setUint16(12, date, true);
      local.setUint32(14, crc, true);
      local.setUint32(18, data.length, true); // compressed size
      local.setUint32(22, data.length, true); // uncompressed size
      local.setUint16(26, name.length, true);
      local.setUint16(28, 0, true); // extra field length
      parts.push(local, name, data);

      const entry = new DataView(new ArrayBuffer(46));
      entry.setUint32(0, 0x02014b50, true); // central directory header signature
      entry.setUint16(4, VERSION, true); // made by
      entry.setUint16(6, VERSION, true); // needed to extract
      entry.setUint16(8, UTF8_NAMES, true);
      entry.setUint16(10, 0, true);
      entry.setUint16(12, time, true);
      entry.setUint16(14, date, true);
      entry.setUint32(16, crc, true);
      entry.setUint32(20, data.length, true);
      entry.setUint32(24, data.length, true);
      entry.setUint16(28, name.length, true);
      // 30 extra, 32 comment, 34 disk, 36 internal attributes, 38 external attributes: all zero
      entry.setUint32(42, offset, true); // where the local header starts
      central.push(entry, name);
      offset += 30 + name.length + data.length;
    }
    const centralSize = central.reduce((n, part) => n + part.byteLength, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true); // end of central directory signature
    end.setUint16(8, files.length, true); // entries on this disk
    end.setUint16(10, files.length, true); // entries in all
    end.setUint32(12, centralSize, true);
    end.setUint32(16, offset, true); // where the central directory starts
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  return { build, crc32 };
})();
