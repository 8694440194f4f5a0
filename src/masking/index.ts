/** The masking engine: compile rules once, plan per result set, mask per row. Pure; no I/O. */
export { DETECTOR_MAP, getDetector, type Detector, type DetectorName, type Range } from './detectors.js';
export { REDACTED, redact, partial, keyedHash, makeStrategy, type Strategy, type StrategyName } from './strategies.js';
export {
  Masker,
  compileMasking,
  compileColumnPattern,
  type ColumnPattern,
  type ColumnPlan,
  type MaskerOptions,
  type ResultColumn,
  type RowPlan,
  type SourceColumn,
  type Scanner,
  type ValueCodec,
} from './plan.js';
export { maskText } from './apply.js';
export { maskWireValue, maskTextValue } from './value.js';
export { maskDataRow, MalformedRowError } from './datarow.js';
export { maskCopyLine, copyDataMessage, type CopyFormat, type CopyOptions } from './copy.js';
export type { MaskCounts } from './counts.js';
