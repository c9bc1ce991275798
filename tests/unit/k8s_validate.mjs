// SPDX-License-Identifier: BSD-2-Clause
// Validates Kubernetes manifests against the Kubernetes OpenAPI schemas, as compiled into the npm packages
// kubernetes-models (built-in kinds) and @kubernetes-models/prometheus-operator (ServiceMonitor and the other
// monitoring.coreos.com kinds). tests/unit/test_deploy.py installs them and runs this script.
//   node tests/unit/k8s_validate.mjs PREFIX FILE...
// PREFIX is the folder that `npm install --prefix PREFIX` filled. Prints one JSON array: for each YAML document
// {file, index, kind, name, ok, error}; exits 0 when every document is valid, 1 when one is not, 2 on a usage
// error. A document whose apiVersion and kind have no model is invalid: nothing unchecked passes.
// The packages are ES modules only, loaded by file path from PREFIX (not by package name, which would resolve
// from this file's folder). Their schemas check types, formats, enums and required fields, not unknown fields
// (as the API server's non-strict field validation): test_deploy.py asserts the fields that matter by name.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [prefix, ...files] = process.argv.slice(2);
if (!prefix || files.length === 0) {
	console.error('usage: node k8s_validate.mjs PREFIX FILE...');
	process.exit(2);
}
const modules = join(prefix, 'node_modules');
const yaml = (await import(pathToFileURL(join(modules, 'js-yaml', 'dist', 'js-yaml.mjs')))).default;

// apiVersion "v1" is the core group (kubernetes-models/v1/KIND.js); "GROUP/VERSION" is GROUP/VERSION/KIND.js, in
// the prometheus-operator package for monitoring.coreos.com.
function modelPath(apiVersion, kind) {
	if (typeof apiVersion !== 'string' || typeof kind !== 'string' || !/^[A-Za-z0-9]+$/.test(kind))
		return null;
	const parts = apiVersion.split('/');
	if (parts.length === 1)
		return join(modules, 'kubernetes-models', parts[0], `${kind}.js`);
	const [group, version] = parts;
	const pkg = group === 'monitoring.coreos.com' ? '@kubernetes-models/prometheus-operator' : 'kubernetes-models';
	return join(modules, pkg, group, version, `${kind}.js`);
}

const results = [];
for (const file of files) {
	let docs;
	try {
		docs = yaml.loadAll(readFileSync(file, 'utf8'));
	} catch (e) {
		results.push({ file, index: 0, kind: null, name: null, ok: false, error: `YAML: ${e.message}` });
		continue;
	}
	// An empty document (a trailing ---) is skipped, as kubectl skips it.
	docs.forEach((doc, index) => doc == null || results.push({ file, index, doc }));
}

for (const r of results) {
	if (!('doc' in r))
		continue;
	const doc = r.doc;
	delete r.doc;
	r.kind = doc && doc.kind;
	r.name = doc && doc.metadata && doc.metadata.name;
	r.ok = false;
	if (typeof doc !== 'object' || Array.isArray(doc)) {
		r.error = 'not a mapping';
		continue;
	}
	const path = modelPath(doc.apiVersion, doc.kind);
	let Model;
	try {
		Model = path && (await import(pathToFileURL(path)))[doc.kind];
	} catch (e) {
		Model = null;
	}
	if (!Model) {
		r.error = `no model for apiVersion ${doc.apiVersion} kind ${doc.kind}`;
		continue;
	}
	try {
		// The constructor sets apiVersion and kind from the model: compare them with the document's first.
		if (Model.apiVersion !== doc.apiVersion || Model.kind !== doc.kind)
			throw new Error(`model is ${Model.apiVersion} ${Model.kind}`);
		new Model(doc).validate();
		r.ok = true;
	} catch (e) {
		r.error = e.message;
	}
}

console.log(JSON.stringify(results, null, 1));
process.exit(results.every((r) => r.ok) ? 0 : 1);
