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
