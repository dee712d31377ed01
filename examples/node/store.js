// `portcullis:auth/store` (wit/store.wit) over sql.js: SQLite compiled to WebAssembly,
// in memory, with the component's own migrations (migrations/sqlite/*.sql) applied in
// order at start. The component writes every statement; this file only runs them.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import initSqlJs from 'sql.js';

// Integers beyond ±2^53 cannot be a JS number without loss; sql.js binds those as text,
// which SQLite turns back into an integer in an INTEGER column and in comparisons.
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Opens an in-memory database with the schema of `migrationsDir` applied. */
export async function openStore(migrationsDir) {
  const SQL = await initSqlJs();
  const db = new SQL.Database();
  db.run('PRAGMA foreign_keys = ON');
  const migrations = readdirSync(migrationsDir).filter((name) => name.endsWith('.sql')).sort();
  for (const name of migrations) {
    db.exec(readFileSync(join(migrationsDir, name), 'utf8'));
  }
  return {
    dialect: () => 'sqlite',
    query: (sql, params) => guarded(() => query(db, sql, params)),
    execute: (sql, params) => guarded(() => execute(db, sql, params)),
    batch: (statements) => guarded(() => batch(db, statements)),
  };
}

/** A WIT `value` as a sql.js parameter. */
function toParam(value) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'integer':
      return value.val >= -SAFE && value.val <= SAFE ? Number(value.val) : value.val.toString();
    case 'real':
    case 'text':
    case 'blob':
      return value.val;
    default:
      throw new TypeError(`unknown value ${value.tag}`);
  }
}

/** A column value read by sql.js (integers as BigInt) as a WIT `value`. */
function toValue(column) {
  if (column === null) return { tag: 'null' };
  if (typeof column === 'bigint') return { tag: 'integer', val: column };
  if (typeof column === 'number') return { tag: 'real', val: column };
  if (typeof column === 'string') return { tag: 'text', val: column };
  return { tag: 'blob', val: column };
}

function query(db, sql, params) {
  const statement = db.prepare(sql);
  try {
    statement.bind(params.map(toParam));
    // Column names are known before the first step, so an empty result still names them.
    const columns = statement.getColumnNames();
    const rows = [];
    while (statement.step()) rows.push(statement.get(null, { useBigInt: true }).map(toValue));
    return { columns, rows };
  } finally {
    statement.free();
  }
}

/** Rows the statement matched ("affected" in store.wit: SQLite counts matched rows). */
function execute(db, sql, params) {
  db.run(sql, params.map(toParam));
  return BigInt(db.getRowsModified());
}

/** All statements in one transaction; an `expect-rows` mismatch rolls everything back. */
function batch(db, statements) {
  db.run('BEGIN IMMEDIATE');
  try {
    const counts = statements.map((statement, index) => {
      const affected = execute(db, statement.sql, statement.params);
      if (statement.expectRows !== undefined && affected !== statement.expectRows) {
        throw { tag: 'condition-failed', val: index };
      }
      return affected;
    });
    db.run('COMMIT');
    return BigUint64Array.from(counts);
  } catch (error) {
    db.run('ROLLBACK');
    throw error;
  }
}

/** Turns sql.js errors into the store's WIT `error` (a thrown `{tag, val}` is the `err`). */
function guarded(operation) {
  try {
    return operation();
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    if (error.message.startsWith('UNIQUE constraint failed')) {
      throw { tag: 'unique-violation', val: error.message };
    }
    throw { tag: 'other', val: error.message };
  }
}
