//! Register value codec: data types, byte/word order, scale/offset, ranges, enum maps, bits.
