#!/usr/bin/env node
// mailauth (npm, MIT) behind the smtpsts vectors protocol (docs/vectors.md).
//
// Runs mailauth's MTA-STS code with no network:
//   sts-policy  parsePolicy(body, {strict: true})  -> mode, max_age, mx (lower-cased by mailauth)
//   mx-match    validateMx(host, {mode: "enforce", mx: patterns}) -> match;
//               a pattern case parses a minimal policy whose mx line is the pattern -> str
//   sts-record  resolvePolicy("example.com", {strict: true, resolver}) with a resolver that
//               returns the case's TXT RRset -> id (a single record is an RRset of one);
//               resolvePolicy only returns an id or false, so a selection reports just the
//               record (or null), and "multiple-records" when mailauth throws multi_sts_records.
// Lenient cases, raw bytes and the other groups are unsupported.
// mailauth is installed into interop/node/ (npm install there); run with cwd anywhere.

import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'node', 'package.json'));
const mtaSts = require('mailauth/lib/mta-sts');

class Unsupported extends Error {}

const strictOnly = req => {
    const value = req.input;
    if ((req.options && req.options.lenient) || (value && typeof value === 'object' && value.lenient)) {
        throw new Unsupported();
    }
    if ('input_hex' in req) {
        throw new Unsupported();
    }
};

const policyResult = p => ({ mode: p.mode, max_age: p.maxAge, mx: p.mx || [] });

const stsPolicy = req => {
    strictOnly(req);
    try {
        return { result: policyResult(mtaSts.parsePolicy(req.input, { strict: true })) };
    } catch (err) {
        return { error: 'PolicySyntaxError', detail: `${err.code || ''} ${err.message}` };
    }
};

const mxMatch = req => {
    strictOnly(req);
    const data = req.input;
    if (!('pattern' in data)) {
        const r = mtaSts.validateMx(data.host, { mode: 'enforce', mx: data.patterns });
        return { result: { match: !!r.valid } };
    }
    const body = `version: STSv1\nmode: enforce\nmx: ${data.pattern}\nmax_age: 86400\n`;
    try {
        return { result: { str: mtaSts.parsePolicy(body, { strict: true }).mx[0] } };
    } catch (err) {
        return { error: 'PolicySyntaxError', detail: `${err.code || ''} ${err.message}` };
    }
};

const stsRecord = async req => {
    strictOnly(req);
    const value = req.input;
    const select = value && typeof value === 'object';
    if (select && !('rrset' in value)) {
        throw new Unsupported();
    }
    const rrset = select ? value.rrset.map(rr => (Array.isArray(rr) ? rr : [rr])) : [[value]];
    const resolver = async () => rrset;
    let id;
    try {
        id = await mtaSts.resolvePolicy('example.com', { strict: true, resolver });
    } catch (err) {
        if (select && err.code === 'multi_sts_records') {
            return { result: { status: 'multiple-records', record: null } };
        }
        if (!select) {
            return { error: 'RecordSyntaxError', detail: `${err.code || ''} ${err.message}` };
        }
        throw err;
    }
    if (select) {
        return { result: { record: id ? { id } : null } };
    }
    return id ? { result: { id } } : { error: 'RecordSyntaxError', detail: 'no valid record' };
};

const handlers = { 'sts-policy': stsPolicy, 'mx-match': mxMatch, 'sts-record': stsRecord };

const answer = async req => {
    const handler = handlers[req.group];
    if (!handler) {
        return { id: req.id, unsupported: true };
    }
    try {
        return { id: req.id, ...(await handler(req)) };
    } catch (err) {
        if (err instanceof Unsupported) {
            return { id: req.id, unsupported: true };
        }
        return { id: req.id, error: 'Crash', detail: `${err.name}: ${err.message}`.slice(0, 500) };
    }
};

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
    process.stdout.write(JSON.stringify(await answer(JSON.parse(line))) + '\n');
}
