// Lint for tsweave (typescript-eslint, flat config), run by `npm test` before the
// unit tests. Each rule turned off or relaxed below says why.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'proxy/weavewait/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // Unused names are errors, except a leading underscore (deliberately unused
      // parameters of interface implementations and callbacks).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Non-null assertions mark invariants the type system cannot see (a connection's
      // `remote` after intro, a buffer set by the addon); each is local and commented.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Empty catch blocks are used for best-effort cleanup; they carry a comment.
      'no-empty': ['error', { allowEmptyCatch: true }],
      // Control characters are matched on purpose when escaping terminal output and
      // validating nicknames.
      'no-control-regex': 'off',
    },
  },
  {
    // [issue #20, memory] The daemon's code takes the metric classes from router/api/prom.ts:
    // prom-client's index loads https, tls, zlib, cluster and @opentelemetry/api besides
    // them (+5.0 MiB RSS in bare node), and String.prototype.localeCompare loads ICU's
    // collation data (+3.0 MiB in bare node) where a code-unit order does.
    files: ['router/**/*.ts', 'ipam/**/*.ts', 'dns/**/*.ts', 'cni/**/*.ts', 'plugin/**/*.ts', 'proxy/**/*.ts'],
    ignores: ['router/api/prom.ts', 'router/api/prom-client-lib.d.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { paths: [{ name: 'prom-client', allowTypeImports: true, message: 'import Registry/Counter/Gauge from router/api/prom.ts (the package index loads https, zlib, cluster and OpenTelemetry: issue #20)' }] }],
      'no-restricted-properties': ['error', { property: 'localeCompare', message: 'compare code units (a < b ? -1 : a > b ? 1 : 0): localeCompare loads ICU collation data into the router (issue #20) and depends on the locale' }],
    },
  },
  {
    // Build scripts (scripts/*.mjs) run on Node.
    files: ['**/*.mjs'],
    languageOptions: { globals: { ...globals.node } },
  },
  {
    // The browser page's script is served as a string and runs in Chromium.
    files: ['router/api/ui/**/*.ts'],
    languageOptions: { globals: { ...globals.browser, ...globals.node } },
  },
);
