/** Built-in type OIDs the masking engine treats specially (pg_type.dat). */

export const INT8_OID = 20;
export const JSON_OID = 114;
export const NUMERIC_OID = 1700;
export const JSONB_OID = 3802;

/**
 * Types whose binary representation is the text itself (textsend and friends):
 * text, varchar, bpchar, name, unknown, xml. citext and other extension types have OIDs that
 * differ per database; callers pass those in (MaskerOptions.textLikeOids).
 */
export const TEXT_LIKE_OIDS: ReadonlySet<number> = new Set([25, 1043, 1042, 19, 705, 142]);

/**
 * Types that cannot hold anything a detector looks for (bounded numbers, timestamps, uuids,
 * network addresses, and their arrays): detectors skip them. int8 and numeric are NOT here: a
 * card number fits in a bigint.
 */
export const NO_DETECT_OIDS: ReadonlySet<number> = new Set([
  16, 18, 21, 23, 26, 27, 28, 29, 650, 700, 701, 790, 829, 869, 1082, 1083, 1114, 1184, 1186, 1266,
  1560, 1562, 2950, 3220, 774,
  // arrays of the above
  1000, 1002, 1005, 1007, 1010, 1011, 1012, 1021, 1022, 791, 1040, 651, 1041, 1182, 1183, 1115, 1185,
  1187, 1270, 1561, 1563, 2951, 3221, 775, 1028,
]);
