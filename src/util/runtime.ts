// Whether this code runs from the TypeScript sources (a development checkout, under the tsx loader) or from the
// compiled JavaScript in dist/ (an installed package). Worker bootstraps read it to import the right file and to
// register the loader only where one is needed. Not a feature switch: behaviour is the same either way.
export const FROM_SOURCE = import.meta.url.endsWith(".ts");
