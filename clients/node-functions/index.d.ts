// Types for `import ... from '@flux/functions'`. The ES module entry
// re-exports the CommonJS implementation, and these types re-export its
// declarations (index.d.cts) the same way.
export * from './index.cjs';
