/**
 * Where the values a statement returns come from, for column masking: every column reference
 * is resolved, with PostgreSQL's own parse tree and the catalog, to the table columns it reads
 * (through aliases, subqueries, CTEs, views, UNION ALL, `*` and `t.*`), and every use of a
 * masked column is classified:
 *
 *   direct output   the column's value itself is returned: masked on the wire, by position
 *   anything else   expressions, functions, aggregates, casts, whole-row values, WHERE, JOIN,
 *                   ORDER BY, GROUP BY, DISTINCT, HAVING, windows, set operations that compare
 *                   rows, writes into another table: the statement is refused
 *
 * While column rules apply, calls to functions outside pg_catalog (they can read any table
 * unseen), built-ins that run SQL given as text, DO blocks, statistics views (which sample
 * column values) and schema changes that would hide a masked column from this analysis are
 * refused too. Pure: the catalog and the rules come in as arguments; nothing here does I/O.
 * When in doubt it refuses, never guesses.
 */

/** A table column a value comes from. */
export interface SourceColumn {
  schema: string;
  table: string;
  column: string;
}

/** A relation the catalog knows: its columns in attribute order, and a view's definition. */
export interface LineageRelation {
  schema: string;
  name: string;
  columns: readonly string[];
  /** views and materialized views: the SELECT they are defined by */
  definition?: string;
  /** "schema.name" of the tables it inherits from or is a partition of: their column rules cover it too */
  parents?: readonly string[];
}

/** What lineage needs of the catalog and the rules. */
export interface LineageContext {
  /** the relation `schema.name`, or for an unqualified name the first match on the search path */
  relation(schema: string | undefined, name: string): LineageRelation | undefined;
  /** the lineage of a view's output columns (resolved through its definition), or why it cannot be followed */
  viewOutputs(rel: LineageRelation): ViewLineage;
  /** the column a rule covers whose values this one holds (itself, or a parent table's), or undefined */
  masked(source: SourceColumn): SourceColumn | undefined;
  /** does some relation with masked columns live in this schema? */
  schemaHoldsMasked(schema: string): boolean;
  /** a call of this function is allowed while column rules apply (a built-in, or allowed by name) */
  functionAllowed(schema: string | undefined, name: string): boolean;
}

export type ViewLineage = { outputs: readonly (readonly SourceColumn[])[] } | { refused: string };

/** One output column: its name and the masked columns whose values it returns unchanged. */
export interface OutputColumn {
  name: string;
  sources: readonly SourceColumn[];
  /** a `*` over something whose width is unknown: the positions after it are unknown */
  unknownWidth?: boolean;
}

export interface StatementLineage {
  /** the rows the statement returns (SELECT, RETURNING, FETCH of a cursor it declares...), by position */
  outputs?: readonly OutputColumn[];
  /** set when the statement must not run */
  refused?: string;
  /** DECLARE / PREPARE: the name whose later FETCH / EXECUTE returns `outputs` */
  defines?: { kind: 'cursor' | 'prepared'; name: string };
  /** the analysis read a positional reference (ORDER BY 2): it depends on a literal */
  positional?: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Ast = { [field: string]: any };

/** Thrown by the walk or its context: the statement must not run, for this reason. */
export class Refused extends Error {}

/** A FROM item as the statement's columns see it. */
interface Item {
  /** the name it is referred to by (alias, relation or CTE name); undefined for an unaliased join */
  ref?: string;
  /** undefined: columns unknown (a relation not in the catalog, a function) */
  columns?: OutputColumn[];
  /** what a refusal names it by */
  label: string;
}

interface Scope {
  parent?: Scope;
  items: Item[];
  ctes: Map<string, OutputColumn[]>;
}

/** Built-ins that run SQL given as text or read whole tables by name: lineage cannot follow them. */
const SQL_RUNNING_FUNCTIONS = new Set([
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'cursor_to_xml', 'cursor_to_xmlschema',
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema', 'schema_to_xml', 'schema_to_xmlschema',
  'schema_to_xml_and_xmlschema', 'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  'ts_stat', 'ts_rewrite', 'pg_mcv_list_items',
]);
/** Catalog relations that hold samples of column values. */
const VALUE_SAMPLING_RELATIONS = new Set([
  'pg_statistic', 'pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic_ext_data',
]);
/** Statements that create code the server may run implicitly (triggers, defaults, casts, operators). */
const CODE_CREATING = new Set([
  'CreateFunctionStmt', 'AlterFunctionStmt', 'DefineStmt', 'CreateCastStmt', 'CreateTransformStmt', 'CreateTrigStmt',
  'CreateEventTrigStmt', 'RuleStmt', 'CreateOpClassStmt', 'CreatePLangStmt', 'CreateConversionStmt', 'DoStmt',
  'CreateExtensionStmt', 'AlterExtensionStmt', 'AlterExtensionContentsStmt', 'LoadStmt',
]);
/** Statements that rename or move relations and columns the catalog was read with. */
const RESHAPING = new Set(['AlterTableStmt', 'RenameStmt', 'AlterObjectSchemaStmt', 'AlterOwnerStmt', 'CreatePolicyStmt', 'AlterPolicyStmt', 'IndexStmt', 'CreateStatsStmt']);

const NOT_FOLLOWED = 'it can be selected, not computed on or filtered';

/** Lineage of one raw statement (a parse tree's `stmt`). Never throws. */
export function statementLineage(stmt: Ast, ctx: LineageContext): StatementLineage {
  const w = new LineageWalker(ctx);
  try {
    return w.statement(stmt);
  } catch (e) {
    if (e instanceof Refused) return { refused: e.message };
    if (e instanceof RangeError) return { refused: 'statement too deeply nested to check masking' };
    throw e;
  }
}

/** Lineage of a view's defining SELECT: its outputs, or why masking cannot follow it. */
export function definitionLineage(select: Ast, ctx: LineageContext): ViewLineage {
  const w = new LineageWalker(ctx);
  try {
    const outputs = w.query(select, { items: [], ctes: new Map() }, 'output');
    return { outputs: outputs.map((o) => o.sources) };
  } catch (e) {
    if (e instanceof Refused) return { refused: e.message };
    if (e instanceof RangeError) return { refused: 'its definition is too deeply nested to check' };
    throw e;
  }
}

function unwrap(node: Ast | undefined): [string, Ast] | undefined {
  if (!node || typeof node !== 'object') return undefined;
  const keys = Object.keys(node);
  if (keys.length !== 1 || !/^[A-Z]/.test(keys[0]!)) return undefined;
  return [keys[0]!, node[keys[0]!] as Ast];
}

function strings(items: Ast[] | undefined): string[] {
  return (items ?? []).map((i) => i?.String?.sval).filter((s): s is string => typeof s === 'string');
}

function label(s: SourceColumn): string {
  return s.schema === 'public' ? `${s.table}.${s.column}` : `${s.schema}.${s.table}.${s.column}`;
}

function dedupe(sources: SourceColumn[]): SourceColumn[] {
  const seen = new Set<string>();
  return sources.filter((s) => {
    const k = `${s.schema}.${s.table}.${s.column}`;
    return !seen.has(k) && (seen.add(k), true);
  });
}

class LineageWalker {
  positional = false;

  constructor(private readonly ctx: LineageContext) {}

  statement(stmt: Ast): StatementLineage {
    const [type, b] = unwrap(stmt) ?? ['', {}];
    const scope: Scope = { items: [], ctes: new Map() };
    const done = (l: StatementLineage): StatementLineage => (this.positional ? { ...l, positional: true } : l);
    if (CODE_CREATING.has(type)) {
      throw new Refused(`${type === 'DoStmt' ? 'DO blocks' : 'creating functions, triggers, rules, casts or operators'} is not allowed while column masking applies (such code can read masked columns unseen)`);
    }
    if (RESHAPING.has(type)) {
      this.reshaping(type, b);
      return done({});
    }
    switch (type) {
      case 'SelectStmt':
        if (b.intoClause) return done(this.writes(b, scope, 'SELECT INTO'));
        return done({ outputs: this.query(b, scope, 'output') });
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        return done(this.modify(type, b, scope));
      case 'ExplainStmt':
        this.statement(b.query);
        return done({});
      case 'DeclareCursorStmt':
        return done({ outputs: this.queryNode(b.query, scope, 'output'), defines: { kind: 'cursor', name: b.portalname } });
      case 'PrepareStmt': {
        const inner = this.statement(b.query);
        return done({ outputs: inner.outputs, defines: { kind: 'prepared', name: b.name } });
      }
      case 'CopyStmt':
        if (b.query) return done({ outputs: this.queryNode(b.query, scope, 'output') });
        if (b.relation && b.is_from === false) return done({ outputs: this.relationItem(b.relation).columns });
        return done({});
      case 'CreateTableAsStmt':
        return done(this.writesNode(b.query, scope, b.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS'));
      case 'ViewStmt':
        return done(this.writesNode(b.query, scope, 'CREATE VIEW'));
      case 'CallStmt':
        this.expr(b.funccall ? { FuncCall: b.funccall } : undefined, scope, 'CALL');
        return done({});
      default:
        // other statements read no rows; what they contain (SET x = (...)?) is walked as expressions
        this.anyExpressions(b, scope, 'this statement');
        return done({});
    }
  }

  /** ALTER / RENAME of a relation (or schema) holding a masked column would hide it from the catalog read at login. */
  private reshaping(type: string, b: Ast): void {
    const rel = b.relation as Ast | undefined;
    if (rel?.relname) {
      const r = this.ctx.relation(rel.schemaname, rel.relname);
      if (r && r.columns.some((c) => this.ctx.masked({ schema: r.schema, table: r.name, column: c }))) {
        throw new Refused(`${r.name} has masked columns: it cannot be altered, renamed or moved through interlock while column masking applies`);
      }
    }
    if (type === 'RenameStmt' && b.renameType === 'OBJECT_SCHEMA' && typeof b.subname === 'string' && this.ctx.schemaHoldsMasked(b.subname)) {
      throw new Refused(`schema ${b.subname} holds masked columns: it cannot be renamed through interlock while column masking applies`);
    }
  }

  /** A query whose outputs go into a table or a definition: a masked column there is refused. */
  private writesNode(node: Ast, scope: Scope, clause: string): StatementLineage {
    const [type, b] = unwrap(node) ?? ['', {}];
    if (type !== 'SelectStmt') {
      this.anyExpressions(b, scope, clause);
      return {};
    }
    return this.writes(b, scope, clause);
  }

  private writes(b: Ast, scope: Scope, clause: string): StatementLineage {
    const outputs = this.query(b, scope, 'output');
    this.refuseMasked(outputs, clause);
    return {};
  }

  private refuseMasked(outputs: readonly OutputColumn[], clause: string): void {
    for (const o of outputs) if (o.sources.length) throw this.refusal(o.sources[0]!, clause);
  }

  private refusal(s: SourceColumn, clause: string): Refused {
    return new Refused(`${label(s)} is masked: ${NOT_FOLLOWED} (used in ${clause})`);
  }

  // --- INSERT / UPDATE / DELETE / MERGE ------------------------------------------------

  private modify(type: string, b: Ast, outer: Scope): StatementLineage {
    const scope = this.withCtes(b.withClause, outer);
    if (type === 'InsertStmt') {
      if (b.selectStmt) this.writesNode(b.selectStmt, scope, 'INSERT');
      const target = this.relationItem(b.relation);
      const own: Scope = { parent: scope, items: [target], ctes: scope.ctes };
      const oc = b.onConflictClause as Ast | undefined;
      if (oc) {
        this.anyExpressions(oc.infer, own, 'ON CONFLICT');
        // EXCLUDED is the proposed row: the agent's own values
        const excluded: Item = { ref: 'excluded', columns: target.columns?.map((c) => ({ name: c.name, sources: [] })), label: 'excluded' };
        const conflict: Scope = { parent: scope, items: [target, excluded], ctes: scope.ctes };
        for (const t of oc.targetList ?? []) this.expr(t.ResTarget?.val, conflict, 'ON CONFLICT DO UPDATE');
        this.expr(oc.whereClause, conflict, 'ON CONFLICT … WHERE');
      }
      return { outputs: this.returning(b, own) };
    }
    const target = this.relationItem(b.relation);
    const own: Scope = { parent: scope, items: [target], ctes: scope.ctes };
    if (type === 'MergeStmt') {
      own.items.push(this.fromItem(b.sourceRelation, scope, own));
      this.expr(b.joinCondition, own, 'MERGE … ON');
      for (const w of b.mergeWhenClauses ?? []) this.anyExpressions(w.MergeWhenClause ?? w, own, 'MERGE');
      return { outputs: this.returning(b, own) };
    }
    const extra = type === 'UpdateStmt' ? b.fromClause : b.usingClause;
    for (const f of extra ?? []) own.items.push(this.fromItem(f, scope, own));
    if (type === 'UpdateStmt') for (const t of b.targetList ?? []) this.expr(t.ResTarget?.val, own, 'UPDATE … SET');
    this.expr(b.whereClause, own, 'WHERE');
    return { outputs: this.returning(b, own) };
  }

  private returning(b: Ast, scope: Scope): OutputColumn[] | undefined {
    const list = (b.returningClause?.exprs ?? b.returningList) as Ast[] | undefined;
    if (!list?.length) return undefined;
    return this.targetList(list, scope);
  }

  // --- queries ---------------------------------------------------------------------------

  /** A query node (wrapped SelectStmt, or another statement such as VALUES) read in `use`. */
  queryNode(node: Ast, scope: Scope, use: 'output' | string): OutputColumn[] {
    const [type, b] = unwrap(node) ?? ['', {}];
    if (type === 'SelectStmt') return this.query(b, scope, use);
    // a data-modifying statement in a CTE: its RETURNING is what the CTE yields
    if (type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt' || type === 'MergeStmt') {
      return [...(this.modify(type, b, scope).outputs ?? [])];
    }
    this.anyExpressions(b, scope, 'this statement');
    return [];
  }

  /**
   * A SELECT's output columns. `use` is 'output' where its values flow on as values (the
   * statement's result, a FROM subquery, a CTE), or the clause that consumes them otherwise
   * (a sublink in WHERE...), where a masked output is refused.
   */
  query(b: Ast, outer: Scope, use: 'output' | string): OutputColumn[] {
    const scope = this.withCtes(b.withClause, outer);
    let outputs: OutputColumn[];
    if (b.op && b.op !== 'SETOP_NONE') {
      const left = this.query(b.larg, scope, use);
      const right = this.query(b.rarg, scope, use);
      outputs = left.map((o, i) => ({ name: o.name, sources: dedupe([...o.sources, ...(right[i]?.sources ?? [])]), unknownWidth: o.unknownWidth || right[i]?.unknownWidth }));
      if (!(b.op === 'SETOP_UNION' && b.all)) {
        this.refuseMasked(outputs, `${b.op.slice(6)}${b.all ? ' ALL' : ''}, which compares rows`);
      }
      this.ordering(b, outputs, scope);
    } else if (b.valuesLists) {
      for (const row of b.valuesLists) this.anyExpressions(row, scope, 'VALUES');
      const first = (b.valuesLists[0]?.List?.items ?? []) as Ast[];
      outputs = first.map((_, i) => ({ name: `column${i + 1}`, sources: [] }));
    } else {
      const local: Scope = { parent: scope, items: [], ctes: scope.ctes };
      for (const f of b.fromClause ?? []) local.items.push(this.fromItem(f, scope, local));
      outputs = this.targetList(b.targetList ?? [], local);
      this.expr(b.whereClause, local, 'WHERE');
      for (const g of b.groupClause ?? []) this.outputOrInput(g, outputs, local, 'GROUP BY');
      this.expr(b.havingClause, local, 'HAVING');
      for (const wdef of b.windowClause ?? []) this.anyExpressions(wdef, local, 'a window');
      const distinct = b.distinctClause as Ast[] | undefined;
      if (distinct?.length) {
        if (distinct.length === 1 && Object.keys(distinct[0] ?? {}).length === 0) this.refuseMasked(outputs, 'DISTINCT');
        else for (const d of distinct) this.outputOrInput(d, outputs, local, 'DISTINCT ON');
      }
      this.ordering(b, outputs, local);
    }
    if (use !== 'output') this.refuseMasked(outputs, use);
    return outputs;
  }

  /** ORDER BY and LIMIT / OFFSET of a query. */
  private ordering(b: Ast, outputs: OutputColumn[], scope: Scope): void {
    for (const s of b.sortClause ?? []) this.outputOrInput(s.SortBy?.node, outputs, scope, 'ORDER BY');
    this.expr(b.limitCount, scope, 'LIMIT');
    this.expr(b.limitOffset, scope, 'OFFSET');
  }

  /** ORDER BY / GROUP BY / DISTINCT ON items may name an output column by position or by name. */
  private outputOrInput(node: Ast | undefined, outputs: OutputColumn[], scope: Scope, clause: string): void {
    if (!node) return;
    const ival = node.A_Const?.ival;
    if (ival !== undefined) {
      this.positional = true;
      const o = outputs[(ival.ival ?? 0) - 1];
      if (o) this.refuseMasked([o], clause);
      else if (outputs.some((x) => x.unknownWidth)) this.refuseMasked(outputs, clause);
      return;
    }
    const fields = node.ColumnRef?.fields as Ast[] | undefined;
    if (fields?.length === 1 && fields[0]?.String) {
      for (const o of outputs) if (o.name === fields[0].String.sval) this.refuseMasked([o], clause);
    }
    // GROUPING SETS / ROLLUP / CUBE hold their items in lists: walked as expressions
    this.expr(node, scope, clause);
  }

  private withCtes(withClause: Ast | undefined, outer: Scope): Scope {
    if (!withClause?.ctes?.length) return outer;
    const scope: Scope = { parent: outer.parent, items: outer.items, ctes: new Map(outer.ctes) };
    for (const c of withClause.ctes as Ast[]) {
      const cte = c.CommonTableExpr as Ast;
      const names = strings(cte.aliascolnames);
      const rename = (cols: OutputColumn[]) => cols.map((o, i) => (names[i] ? { ...o, name: names[i]! } : o));
      const [type, q] = unwrap(cte.ctequery) ?? ['', {}];
      if (withClause.recursive && type === 'SelectStmt' && q.op && q.op !== 'SETOP_NONE') {
        // the recursive term reads the CTE itself: its columns are the non-recursive term's first
        scope.ctes.set(cte.ctename, rename(this.query(q.larg, scope, 'output')));
      }
      scope.ctes.set(cte.ctename, rename(this.queryNode(cte.ctequery, scope, 'output')));
    }
    return scope;
  }

  private targetList(list: Ast[], scope: Scope): OutputColumn[] {
    const out: OutputColumn[] = [];
    for (const t of list) {
      const rt = t.ResTarget as Ast | undefined;
      if (!rt) continue;
      const val = rt.val as Ast | undefined;
      const fields = val?.ColumnRef?.fields as Ast[] | undefined;
      if (fields) {
        if (fields.at(-1)?.A_Star) {
          out.push(...this.star(fields.slice(0, -1), scope));
          continue;
        }
        const r = this.resolve(fields, scope);
        if (r.kind === 'column') {
          out.push({ name: rt.name ?? strings(fields).at(-1) ?? '?column?', sources: r.sources });
          continue;
        }
        if (r.kind === 'row') this.refuseRow(r.item, 'a whole-row value');
        out.push({ name: rt.name ?? strings(fields).at(-1) ?? '?column?', sources: [] });
        continue;
      }
      this.expr(val, scope, 'an expression');
      out.push({ name: rt.name ?? '?column?', sources: [] });
    }
    return out;
  }

  /** `*` or `t.*` in a target list. */
  private star(qualifier: Ast[], scope: Scope): OutputColumn[] {
    const names = strings(qualifier);
    const items = names.length ? [this.itemNamed(names.at(-1)!, scope)].filter((i): i is Item => i !== undefined) : scope.items;
    if (names.length && !items.length) return [{ name: '*', sources: [], unknownWidth: true }];
    return items.flatMap((i) => i.columns ?? [{ name: '*', sources: [], unknownWidth: true }]);
  }

  private refuseRow(item: Item, clause: string): void {
    for (const c of item.columns ?? []) if (c.sources.length) throw this.refusal(c.sources[0]!, `${clause} of ${item.label}`);
  }

  // --- FROM ------------------------------------------------------------------------------

  /** A FROM item; `outer` is the query's enclosing scope, `local` the FROM so far (for LATERAL). */
  private fromItem(node: Ast, outer: Scope, local: Scope): Item {
    const [type, b] = unwrap(node) ?? ['', {}];
    switch (type) {
      case 'RangeVar':
        return this.rangeVar(b, outer);
      case 'RangeSubselect': {
        const scope = b.lateral ? local : outer;
        const cols = this.queryNode(b.subquery, scope, 'output');
        return this.aliased({ ref: b.alias?.aliasname, columns: cols, label: b.alias?.aliasname ?? 'a subquery' }, b.alias);
      }
      case 'RangeFunction': {
        for (const f of b.functions ?? []) this.anyExpressions(f, local, 'a function in FROM');
        const names = strings(b.alias?.colnames);
        // a function's columns are computed: none carries a masked value unchanged
        return { ref: b.alias?.aliasname, columns: names.length && !b.ordinality ? names.map((name) => ({ name, sources: [] })) : undefined, label: 'a function' };
      }
      case 'JoinExpr':
        return this.join(b, outer, local);
      case 'RangeTableSample': {
        const sampled = this.fromItem(b.relation, outer, local);
        this.anyExpressions({ args: b.args, repeatable: b.repeatable }, local, 'TABLESAMPLE');
        return sampled;
      }
      default:
        // TABLESAMPLE, XMLTABLE, JSON_TABLE...: their expressions are computed uses
        this.anyExpressions(b, local, 'FROM');
        return { ref: b.alias?.aliasname, label: type };
    }
  }

  private rangeVar(b: Ast, scope: Scope): Item {
    const ref = b.alias?.aliasname ?? b.relname;
    if (!b.schemaname) {
      for (let s: Scope | undefined = scope; s; s = s.parent) {
        const cte = s.ctes.get(b.relname);
        if (cte) return this.aliased({ ref, columns: cte, label: b.relname }, b.alias);
      }
    }
    return this.aliased({ ...this.relationItem(b), ref }, b.alias);
  }

  /** A table or view by name, its columns carrying the masked sources they read. */
  private relationItem(b: Ast): Item {
    const rel = this.ctx.relation(b.schemaname, b.relname);
    const labelName = b.schemaname ? `${b.schemaname}.${b.relname}` : b.relname;
    if (!rel) {
      if (VALUE_SAMPLING_RELATIONS.has(b.relname) && (!b.schemaname || b.schemaname === 'pg_catalog')) throw this.sampling(b.relname);
      return { ref: b.alias?.aliasname ?? b.relname, label: labelName };
    }
    if (rel.schema === 'pg_catalog' && VALUE_SAMPLING_RELATIONS.has(rel.name)) throw this.sampling(rel.name);
    let columns: OutputColumn[];
    if (rel.definition !== undefined) {
      const view = this.ctx.viewOutputs(rel);
      if ('refused' in view) throw new Refused(`view ${rel.name} reads a masked column in a way masking cannot follow: ${view.refused}`);
      columns = rel.columns.map((name, i) => ({ name, sources: view.outputs[i] ?? [] }));
    } else {
      columns = rel.columns.map((name) => {
        const covered = this.ctx.masked({ schema: rel.schema, table: rel.name, column: name });
        return { name, sources: covered ? [covered] : [] };
      });
    }
    return { ref: b.alias?.aliasname ?? b.relname, columns, label: labelName };
  }

  private sampling(name: string): Refused {
    return new Refused(`${name} holds samples of column values: it cannot be read while column masking applies`);
  }

  /** `alias(a, b)` renames the first columns. */
  private aliased(item: Item, alias: Ast | undefined): Item {
    const names = strings(alias?.colnames);
    if (!names.length || !item.columns) return item;
    return { ...item, columns: item.columns.map((c, i) => (names[i] ? { ...c, name: names[i]! } : c)) };
  }

  private join(b: Ast, outer: Scope, local: Scope): Item {
    const left = this.fromItem(b.larg, outer, local);
    // what stands to the left is in scope for a LATERAL item (and for any function in FROM)
    const right = this.fromItem(b.rarg, outer, { ...local, items: [...local.items, left] });
    const both: Scope = { parent: outer, items: [left, right], ctes: outer.ctes };
    let using = strings(b.usingClause);
    if (b.isNatural) {
      const rightNames = new Set(this.visibleColumns(right).map((c) => c.name));
      using = this.visibleColumns(left).map((c) => c.name).filter((n) => rightNames.has(n));
      if (!left.columns || !right.columns) this.refuseRow(left.columns ? left : right, 'NATURAL JOIN');
    }
    for (const name of using) {
      for (const side of [left, right]) {
        const r = this.columnIn(side, name);
        if (r?.length) throw this.refusal(r[0]!, 'JOIN … USING');
      }
    }
    this.expr(b.quals, both, 'JOIN … ON');
    // the join's own columns: merged USING columns first, then each side's others
    let columns: OutputColumn[] | undefined;
    if (left.columns && right.columns) {
      const merged = using.map((name) => ({ name, sources: [] }));
      const rest = (cols: OutputColumn[]) => cols.filter((c) => !using.includes(c.name));
      columns = [...merged, ...rest(left.columns), ...rest(right.columns)];
    } else if (!using.length) {
      columns = [...(left.columns ?? [{ name: '*', sources: [], unknownWidth: true }]), ...(right.columns ?? [{ name: '*', sources: [], unknownWidth: true }])];
    }
    if (b.alias) return this.aliased({ ref: b.alias.aliasname, columns, label: b.alias.aliasname }, b.alias);
    // unaliased: both sides stay visible by their own names
    return { columns, label: 'a join', children: [left, right] } as Item & { children: Item[] };
  }

  private visibleColumns(item: Item): OutputColumn[] {
    return item.columns ?? [];
  }

  // --- names -------------------------------------------------------------------------------

  /** Items visible by name in one scope level: an unaliased join's sides count as their own. */
  private flatItems(items: Item[]): Item[] {
    return items.flatMap((i) => {
      const children = (i as Item & { children?: Item[] }).children;
      return children ? this.flatItems(children) : [i];
    });
  }

  private itemNamed(name: string, scope: Scope): Item | undefined {
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      const hit = this.flatItems(s.items).find((i) => i.ref === name);
      if (hit) return hit;
    }
    return undefined;
  }

  /** The masked sources of `name` in an item; undefined when the item has no such column (or unknown columns). */
  private columnIn(item: Item, name: string): SourceColumn[] | undefined {
    const c = item.columns?.filter((col) => col.name === name);
    return c?.length ? dedupe(c.flatMap((x) => x.sources)) : undefined;
  }

  /** What a column reference names: a column (with the masked sources it reads), a whole row, or nothing known. */
  private resolve(fields: Ast[], scope: Scope): { kind: 'column'; sources: SourceColumn[] } | { kind: 'row'; item: Item } | { kind: 'unknown' } {
    const names = strings(fields);
    if (names.length !== fields.length || !names.length) return { kind: 'unknown' };
    if (names.length === 1) {
      const name = names[0]!;
      let row: Item | undefined;
      for (let s: Scope | undefined = scope; s; s = s.parent) {
        const items = this.flatItems(s.items);
        const found = items.map((i) => this.columnIn(i, name)).filter((x): x is SourceColumn[] => x !== undefined);
        if (found.length) return { kind: 'column', sources: dedupe(found.flat()) };
        row ??= items.find((i) => i.ref === name);
        // an item of unknown columns may hold it, or (correlated) an outer one: look further out (mask more, never less)
      }
      return row ? { kind: 'row', item: row } : { kind: 'unknown' };
    }
    // t.col, schema.t.col, db.schema.t.col
    const item = this.itemNamed(names.at(-2)!, scope);
    if (!item) return { kind: 'unknown' };
    const sources = this.columnIn(item, names.at(-1)!);
    return { kind: 'column', sources: sources ?? [] };
  }

  // --- expressions ---------------------------------------------------------------------------

  /** Any masked column read inside `node` is refused, as used in `clause`. */
  expr(node: Ast | undefined, scope: Scope, clause: string): void {
    if (node === undefined || node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) this.expr(n, scope, clause);
      return;
    }
    const w = unwrap(node);
    if (!w) {
      this.anyExpressions(node, scope, clause);
      return;
    }
    const [type, b] = w;
    switch (type) {
      case 'ColumnRef': {
        const fields = b.fields as Ast[];
        if (fields.at(-1)?.A_Star) {
          for (const c of this.star(fields.slice(0, -1), scope)) if (c.sources.length) throw this.refusal(c.sources[0]!, `${clause} (a whole-row value)`);
          return;
        }
        const r = this.resolve(fields, scope);
        if (r.kind === 'column' && r.sources.length) throw this.refusal(r.sources[0]!, clause);
        if (r.kind === 'row') this.refuseRow(r.item, `${clause} (a whole-row value)`);
        return;
      }
      case 'SubLink':
        this.expr(b.testexpr, scope, clause);
        this.queryNode(b.subselect, scope, `a subquery in ${clause}`);
        return;
      case 'FuncCall':
        this.functionCall(b.funcname);
        this.anyExpressions(b, scope, clause === 'an expression' ? 'a function or aggregate' : clause);
        return;
      case 'SelectStmt':
        this.query(b, scope, `a subquery in ${clause}`);
        return;
      default:
        this.anyExpressions(b, scope, clause);
    }
  }

  /** Walks every field of a node as expressions. */
  private anyExpressions(b: Ast | undefined, scope: Scope, clause: string): void {
    if (!b || typeof b !== 'object') return;
    for (const v of Object.values(b)) if (v && typeof v === 'object') this.expr(v as Ast, scope, clause);
  }

  private functionCall(funcname: Ast[] | undefined): void {
    const parts = strings(funcname);
    const name = parts.at(-1);
    if (!name) return;
    const schema = parts.length > 1 ? parts.at(-2) : undefined;
    if (SQL_RUNNING_FUNCTIONS.has(name.toLowerCase()) && (schema === undefined || schema === 'pg_catalog')) {
      throw new Refused(`${name}() runs SQL or reads tables that masking cannot follow: it is not allowed while column masking applies`);
    }
    if (!this.ctx.functionAllowed(schema, name)) {
      throw new Refused(`${schema ? `${schema}.` : ''}${name}() is not a built-in function: it could read masked columns unseen, so it is not allowed while column masking applies (a masking rule may allow it by name)`);
    }
  }
}
