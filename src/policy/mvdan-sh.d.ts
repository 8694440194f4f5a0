/**
 * The part of mvdan-sh (the GopherJS build of mvdan.cc/sh/v3/syntax) that the shell analysis
 * reads. Nodes are Go structs seen through JS wrappers: nil fields are null, slices are arrays,
 * positions are byte offsets into the UTF-8 source.
 */
declare module 'mvdan-sh' {
  export interface Pos {
    Offset(): number;
  }

  export interface Node {
    Pos(): Pos;
    End(): Pos;
  }

  export interface Lit extends Node {
    Value: string;
  }

  export interface Word extends Node {
    Parts: Node[];
  }

  export interface SglQuoted extends Node {
    /** $'…' (ANSI-C quoting) */
    Dollar: boolean;
    Value: string;
  }

  export interface DblQuoted extends Node {
    /** $"…" (locale translation) */
    Dollar: boolean;
    Parts: Node[];
  }

  export interface ArrayElem extends Node {
    Index: Node | null;
    Value: Word | null;
  }

  export interface ArrayExpr extends Node {
    Elems: ArrayElem[];
  }

  export interface Assign extends Node {
    Append: boolean;
    /** a declaration argument without "=": a name, or an option word such as -x */
    Naked: boolean;
    Name: Lit | null;
    Index: Node | null;
    Value: Word | null;
    Array: ArrayExpr | null;
  }

  export interface CallExpr extends Node {
    Assigns: Assign[];
    Args: Word[];
  }

  export interface DeclClause extends Node {
    Variant: Lit;
    Args: Assign[];
  }

  export interface Redirect extends Node {
    Op: number;
    N: Lit | null;
    Word: Word | null;
    Hdoc: Word | null;
  }

  export interface LetClause extends Node {
    Exprs: Node[];
  }

  export interface File extends Node {
    Stmts: Node[];
  }

  export interface Parser {
    /** throws a ParseError on invalid input */
    Parse(src: string, name: string): File;
  }

  export interface ParseError {
    Error(): string;
  }

  export interface Syntax {
    NewParser(...options: unknown[]): Parser;
    /** calls visit on every node, depth first (null after a node's children); false skips the children */
    Walk(node: Node, visit: (node: Node | null) => boolean): void;
    NodeType(node: Node): string;
  }

  const sh: { syntax: Syntax };
  export default sh;
}
