#!/usr/bin/env node
// The omnilmm command line: a thin shell over the library.
console.log('omnilmm');
