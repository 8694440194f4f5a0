/** A usage mistake: the command exits 2 with the message and the usage text. */
export class UsageError extends Error {}
