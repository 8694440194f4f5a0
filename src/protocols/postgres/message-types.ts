/** The type bytes of the PostgreSQL messages the proxy looks at (protocol 3.0). */

/** sent by the client */
export const Frontend = {
  Query: 0x51, // 'Q'
  Parse: 0x50, // 'P'
  FunctionCall: 0x46, // 'F'
  Terminate: 0x58, // 'X'
} as const;

/** sent by the server */
export const Backend = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  ErrorResponse: 0x45, // 'E'
  ReadyForQuery: 0x5a, // 'Z'
  RowDescription: 0x54, // 'T'
  DataRow: 0x44, // 'D'
  CopyOutResponse: 0x48, // 'H'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CommandComplete: 0x43, // 'C'
} as const;
