// The node half of api's OpenAPI tests (openapi_test.go runs it, with
// NODE_PATH at the packages install.sh installs):
//
//   node check.js validate DOC        DOC is a valid OpenAPI 3.1 document
//   node check.js answers DOC FILE    each answer in FILE matches DOC
//   node check.js json DOC            DOC as JSON, on stdout
//
// validate: @apidevtools/swagger-parser parses DOC, resolves every $ref and
// validates it against the OpenAPI 3.1 JSON Schema; then what that schema
// cannot see: every Schema Object compiles under Ajv's strict mode (no
// unknown keyword, type or format; every required property defined), every
// default is valid against its schema, operation ids are unique and each
// path's {wildcards} are exactly its path parameters.
//
// answers: FILE is a JSON array of {op, status, type, body}: op a route
// ("GET /v1/isps/{isp}"), status the HTTP status, type the media type ("":
// no body), body the JSON the API answered. Each body is validated against
// the schema DOC gives that operation's response (the status's; for an
// error, else default) for that media type, with one addition: an object schema that
// lists properties and says nothing of others admits no other (a field
// the API sends that the document does not name is a mismatch).
//
// Problems are printed one a line; the exit status is 1 when there are any.
"use strict";

const SwaggerParser = require("@apidevtools/swagger-parser");
const Ajv2020 = require("ajv/dist/2020");
const addFormats = require("ajv-formats");
const fs = require("fs");

// newAjv is a strict Ajv for OpenAPI 3.1's Schema Objects: JSON Schema
// 2020-12 with the formats, and OpenAPI's own annotation keywords.
function newAjv() {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  ajv.addVocabulary(["discriminator", "xml", "externalDocs", "example"]);
  return ajv;
}

const methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

// eachSchema calls fn(where, schema) for every schema of the dereferenced
// document, once each: the components' first (where names the component
// when the schema is one), then the operations' parameters, request
// bodies, responses and their headers.
function eachSchema(api, fn) {
  const seen = new Set();
  const once = (where, s) => {
    if (seen.has(s)) return;
    seen.add(s);
    fn(where, s);
  };
  for (const [name, s] of Object.entries((api.components || {}).schemas || {})) {
    once(`components.schemas.${name}`, s);
  }
  const params = (list, where) =>
    (list || []).forEach((p, i) => p.schema && once(`${where} parameter ${p.name || i}`, p.schema));
  const content = (c, where) =>
    Object.entries(c || {}).forEach(([type, m]) => m.schema && once(`${where} ${type}`, m.schema));
  for (const [path, item] of Object.entries(api.paths || {})) {
    params(item.parameters, path);
    for (const m of methods) {
      const op = item[m];
      if (!op) continue;
      const where = `${m.toUpperCase()} ${path}`;
      params(op.parameters, where);
      if (op.requestBody) content(op.requestBody.content, `${where} request`);
      for (const [status, r] of Object.entries(op.responses || {})) {
        content(r.content, `${where} ${status}`);
        for (const [h, hd] of Object.entries(r.headers || {})) {
          if (hd.schema) once(`${where} ${status} header ${h}`, hd.schema);
        }
      }
    }
  }
}

// eachSubschema calls fn on s and every schema inside it.
function eachSubschema(s, fn) {
  if (!s || typeof s !== "object") return;
  fn(s);
  for (const k of ["items", "not", "if", "then", "else", "additionalProperties", "unevaluatedProperties", "contains"]) {
    if (s[k] && typeof s[k] === "object") eachSubschema(s[k], fn);
  }
  for (const k of ["allOf", "anyOf", "oneOf", "prefixItems"]) {
    (s[k] || []).forEach((x) => eachSubschema(x, fn));
  }
  for (const k of ["properties", "patternProperties", "$defs", "dependentSchemas"]) {
    Object.values(s[k] || {}).forEach((x) => eachSubschema(x, fn));
  }
}

async function validate(doc) {
  const out = [];
  try {
    await SwaggerParser.validate(doc);
  } catch (e) {
    out.push(String(e.message).trim());
    return out; // what follows needs a document that resolves
  }
  const api = await SwaggerParser.dereference(doc);
  const ids = new Map();
  for (const [path, item] of Object.entries(api.paths || {})) {
    const wild = new Set([...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]));
    for (const m of methods) {
      const op = item[m];
      if (!op) continue;
      const where = `${m.toUpperCase()} ${path}`;
      if (op.operationId) {
        if (ids.has(op.operationId)) out.push(`${where}: operationId ${op.operationId} is also ${ids.get(op.operationId)}'s`);
        ids.set(op.operationId, where);
      }
      const inPath = new Set();
      for (const p of [...(item.parameters || []), ...(op.parameters || [])]) {
        if (p.in === "path") inPath.add(p.name);
      }
      for (const w of wild) if (!inPath.has(w)) out.push(`${where}: {${w}} is not a path parameter`);
      for (const p of inPath) if (!wild.has(p)) out.push(`${where}: path parameter ${p} is not in the path`);
    }
  }
  const ajv = newAjv();
  eachSchema(api, (where, s) => {
    try {
      ajv.compile(s);
    } catch (e) {
      out.push(`${where}: ${e.message}`);
      return;
    }
    eachSubschema(s, (sub) => {
      if (sub.default === undefined) return;
      const check = ajv.compile(sub);
      if (!check(sub.default)) out.push(`${where}: default ${JSON.stringify(sub.default)}: ${ajv.errorsText(check.errors)}`);
    });
  });
  return out;
}

// closed returns a copy of s in which an object schema that lists
// properties and says nothing of others admits no other.
function closed(s) {
  const c = structuredClone(s);
  eachSubschema(c, (sub) => {
    if (sub.properties && sub.additionalProperties === undefined && sub.unevaluatedProperties === undefined) {
      sub.additionalProperties = false;
    }
  });
  return c;
}

async function answers(doc, file) {
  const api = await SwaggerParser.dereference(doc);
  const ajv = newAjv();
  const compiled = new Map();
  const out = [];
  for (const a of JSON.parse(fs.readFileSync(file, "utf8"))) {
    const [method, path] = a.op.split(" ");
    const op = ((api.paths || {})[path] || {})[method.toLowerCase()];
    if (!op) {
      out.push(`${a.op}: not in the document`);
      continue;
    }
    // A success has its own status in the document; an error may be the
    // default response's.
    const rs = op.responses || {};
    const r = rs[String(a.status)] || (a.status >= 400 ? rs.default : undefined);
    if (!r) {
      out.push(`${a.op} ${a.status}: the document gives no such status`);
      continue;
    }
    if (a.type === "") {
      if (r.content) out.push(`${a.op} ${a.status}: the API answers no body, the document gives one`);
      continue;
    }
    const media = r.content && r.content[a.type];
    if (!media || !media.schema) {
      out.push(`${a.op} ${a.status} ${a.type}: the document gives no such answer`);
      continue;
    }
    const key = `${a.op} ${a.status} ${a.type}`;
    if (!compiled.has(key)) compiled.set(key, ajv.compile(closed(media.schema)));
    const check = compiled.get(key);
    if (!check(a.body)) {
      for (const e of check.errors) {
        const extra = e.params && e.params.additionalProperty ? ` ${e.params.additionalProperty}` : "";
        out.push(`${a.op} ${a.status}: ${e.instancePath || "/"} ${e.message}${extra} in ${JSON.stringify(a.body)}`);
      }
    }
  }
  return out;
}

async function main() {
  const [mode, doc, file] = process.argv.slice(2);
  let out;
  switch (mode) {
    case "validate":
      out = await validate(doc);
      break;
    case "answers":
      out = await answers(doc, file);
      break;
    case "json":
      process.stdout.write(JSON.stringify(await SwaggerParser.parse(doc)));
      return;
    default:
      throw new Error("usage: check.js validate DOC | answers DOC FILE | json DOC");
  }
  for (const line of out) console.log(line);
  process.exitCode = out.length ? 1 : 0;
}

main().catch((e) => {
  console.log(e.stack || String(e));
  process.exitCode = 2;
});
