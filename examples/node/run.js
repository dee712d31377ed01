// Runs the Portcullis component inside Node and walks one account through its life:
// register → login → verify → list sessions → refresh → reuse of a spent refresh token
// (refused, the session revoked) → change password → revoke a session → logout →
// logout everywhere. Every step's result is checked; any mismatch ends the program with
// exit code 1.
//
// The component is the portable `.wasm` (built by `cargo run --release -p
// portcullis-spin-compose`); PORTCULLIS_COMPONENT_WASM names another file.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { instantiate, transpileComponent } from './portcullis.js';
import { openStore } from './store.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const wasmPath = resolve(
  process.env.PORTCULLIS_COMPONENT_WASM ??
    join(root, 'target', 'component', 'portcullis-portable.wasm'),
);

const PASSWORD = 'Tr1cky!Horse#42';
const NEW_PASSWORD = 'An0ther!Horse#7';
const LAPTOP = { deviceInfo: 'node example', ipAddress: '203.0.113.7' };
const PHONE = { deviceInfo: 'phone', ipAddress: '198.51.100.4' };

let steps = 0;

/** Runs one step: prints its name once `check` returned. */
function step(name, check) {
  const result = check();
  steps += 1;
  console.log(`ok ${steps} - ${name}`);
  return result;
}

/** Calls `operation`, which must fail with the API error case `tag`; returns its payload. */
function refused(operation, tag) {
  try {
    operation();
  } catch (error) {
    const payload = error.payload;
    if (payload?.tag === tag) return payload.val;
    throw new Error(`expected error ${tag}, got ${payload ? JSON.stringify(payload) : error}`);
  }
  throw new Error(`expected error ${tag}, but the call succeeded`);
}

async function main() {
  if (!existsSync(wasmPath)) {
    throw new Error(
      `${wasmPath} does not exist: build it with \`cargo run --release -p portcullis-spin-compose\` ` +
        'or set PORTCULLIS_COMPONENT_WASM',
    );
  }
  const modulePath = await transpileComponent(wasmPath, join(here, 'generated'));
  const store = await openStore(join(root, 'migrations', 'sqlite'));
  const api = await instantiate(modulePath, store, {
    jwt_secret: process.env.PORTCULLIS_JWT_SECRET ?? randomBytes(32).toString('hex'),
    max_sessions: '3',
  });
  scenario(api);
  console.log(`node example: all ${steps} steps passed`);
}

function scenario(api) {
  step('check-settings accepts the settings', () => api.checkSettings());

  step('a common password is refused with its field code', () => {
    const weak = { username: 'jane', email: 'jane@example.com', password: 'Password123!' };
    const errors = refused(() => api.register(weak, PHONE), 'validation-failed');
    assert.ok(errors.some((e) => e.field === 'password' && e.code === 'common_password'));
  });

  const registration = { username: 'john_doe', email: 'John@Example.com', password: PASSWORD };
  const first = step('register signs the account in', () => {
    const registered = api.register(registration, PHONE);
    assert.equal(registered.tag, 'signed-in');
    assert.equal(registered.val.tokenType, 'Bearer');
    assert.equal(registered.val.user.email, 'john@example.com');
    return registered.val;
  });
  const user = first.user;

  step('the same username again is username-taken', () => {
    const again = { ...registration, email: 'other@example.com' };
    refused(() => api.register(again, PHONE), 'username-taken');
  });

  step('a wrong password is invalid-credentials', () =>
    refused(() => api.login('john_doe', 'Wrong!Horse#42', LAPTOP), 'invalid-credentials'),
  );

  const login = step('login by email opens a second session', () => {
    const tokens = api.login('john@example.com', PASSWORD, LAPTOP);
    assert.equal(tokens.user.id, user.id);
    assert.notEqual(tokens.sessionId, first.sessionId);
    return tokens;
  });

  step('verify-access-token returns the user and the session', () => {
    const verified = api.verifyAccessToken(login.accessToken);
    assert.equal(verified.userId, user.id);
    assert.equal(verified.sessionId, login.sessionId);
    assert.equal(verified.user.username, 'john_doe');
  });

  step('list-sessions shows both sessions, this one current', () => {
    const sessions = api.listSessions(login.accessToken);
    assert.equal(sessions.length, 2);
    const current = sessions.find((session) => session.isCurrent);
    assert.equal(current.id, login.sessionId);
    assert.equal(current.deviceInfo, LAPTOP.deviceInfo);
    assert.equal(current.ipAddress, LAPTOP.ipAddress);
  });

  const refreshed = step('refresh rotates the refresh token', () => {
    const tokens = api.refresh(login.refreshToken, LAPTOP);
    assert.equal(tokens.sessionId, login.sessionId);
    assert.notEqual(tokens.refreshToken, login.refreshToken);
    assert.equal(api.verifyAccessToken(tokens.accessToken).sessionId, login.sessionId);
    return tokens;
  });

  step('the spent refresh token again is refresh-token-reused', () =>
    refused(() => api.refresh(login.refreshToken, LAPTOP), 'refresh-token-reused'),
  );

  step('reuse revoked the whole session', () => {
    refused(() => api.verifyAccessToken(refreshed.accessToken), 'invalid-token');
    refused(() => api.refresh(refreshed.refreshToken, LAPTOP), 'invalid-refresh-token');
  });

  step('change-password needs the current password', () =>
    refused(
      () => api.changePassword(first.accessToken, 'Wrong!Horse#42', NEW_PASSWORD, PHONE),
      'invalid-credentials',
    ),
  );

  step('change-password takes the new password', () => {
    api.changePassword(first.accessToken, PASSWORD, NEW_PASSWORD, PHONE);
    refused(() => api.login('john_doe', PASSWORD, LAPTOP), 'invalid-credentials');
    assert.equal(api.verifyAccessToken(first.accessToken).sessionId, first.sessionId);
  });

  step('revoke-session of an unknown session is not-found', () =>
    refused(() => api.revokeSession(first.accessToken, 'no-such-session', PHONE), 'not-found'),
  );

  step('logout ends the session at once', () => {
    api.logout(first.accessToken, PHONE);
    refused(() => api.verifyAccessToken(first.accessToken), 'invalid-token');
  });

  step('logout-all ends every session', () => {
    const laptop = api.login('john_doe', NEW_PASSWORD, LAPTOP);
    const phone = api.login('john_doe', NEW_PASSWORD, PHONE);
    api.revokeSession(laptop.accessToken, phone.sessionId, LAPTOP);
    refused(() => api.verifyAccessToken(phone.accessToken), 'invalid-token');
    assert.equal(api.listSessions(laptop.accessToken).length, 1);
    api.logoutAll(laptop.accessToken, LAPTOP);
    refused(() => api.listSessions(laptop.accessToken), 'invalid-token');
  });

  step('get-user still reads the account', () => {
    assert.equal(api.getUser(user.id).username, 'john_doe');
    refused(() => api.getUser('no-such-id'), 'not-found');
  });
}

main().catch((error) => {
  console.error(`node example failed: ${error.stack ?? error}`);
  process.exitCode = 1;
});
