// Function tools as the settings form takes them: the checks of sessions_app/protocol/tools.py, in its words,
// and the form's ready examples.
'use strict';

const NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
const TOOL_FIELDS = ['type', 'name', 'description', 'parameters', 'strict'];
const MAX_TOOLS = 128;

/** The form's "Fill with an example" buttons (data-tool-example); `clear` empties the field. */
export const TOOL_EXAMPLES = {
  weather: [{
    type: 'function', name: 'get_weather', description: 'Current weather in a city.',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', description: 'City name, e.g. Paris' },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
    strict: true,
  }],
  calculator: [{
    type: 'function', name: 'calculate', description: 'Evaluate an arithmetic expression.',
    parameters: {
      type: 'object',
      properties: { expression: { type: 'string', description: 'e.g. (2 + 3) * 4' } },
      required: ['expression'],
      additionalProperties: false,
    },
    strict: true,
  }],
  clear: null,
};

function kindOf(value) {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'boolean') return 'true/false';
  return 'a number';
}

function shown(value) {
  if (typeof value !== 'string') return kindOf(value);
  return value.length <= 40 ? `"${value}"` : `"${value.slice(0, 40)}…"`;
}

function parametersProblems(parameters) {
  if (parameters === null || typeof parameters !== 'object' || Array.isArray(parameters)) {
    return [`"parameters" must be a JSON schema object { … }, not ${kindOf(parameters)}.`];
  }
  const problems = [];
  if (parameters.type !== 'object') problems.push('"parameters" must have "type": "object" at the top.');
  const props = parameters.properties;
  if ('properties' in parameters && (props === null || typeof props !== 'object' || Array.isArray(props))) {
    problems.push(`"parameters.properties" must be an object, not ${kindOf(props)}.`);
  }
  const required = parameters.required;
  if ('required' in parameters && !(Array.isArray(required) && required.every((r) => typeof r === 'string'))) {
    problems.push('"parameters.required" must be a list of property names.');
  }
  return problems;
}

function toolProblems(tool) {
  const problems = [];
  if (!('type' in tool)) problems.push('"type" is missing: only "function" tools can be set here.');
  else if (tool.type !== 'function') {
    problems.push(`"type" must be "function", not ${shown(tool.type)}: only function tools can be set here.`);
  }
  if (!('name' in tool)) problems.push('"name" is missing.');
  else if (typeof tool.name !== 'string') problems.push(`"name" must be a string, not ${kindOf(tool.name)}.`);
  else if (!NAME_PATTERN.test(tool.name)) {
    problems.push('"name" may use only letters, digits, "_" and "-", 1 to 64 characters.');
  }
  if ('description' in tool && typeof tool.description !== 'string') {
    problems.push(`"description" must be a string, not ${kindOf(tool.description)}.`);
  }
  if (!('parameters' in tool)) {
    problems.push('"parameters" is missing: give a JSON schema such as {"type": "object", "properties": {}}.');
  } else {
    problems.push(...parametersProblems(tool.parameters));
  }
  if ('strict' in tool && typeof tool.strict !== 'boolean') {
    problems.push(`"strict" must be true or false, not ${kindOf(tool.strict)}.`);
  }
  for (const key of Object.keys(tool)) {
    if (!TOOL_FIELDS.includes(key)) {
      problems.push(`unknown field "${key}" (a function tool has type, name, description, parameters and strict).`);
    }
  }
  return problems;
}

/** The problems of a tools text, as sessions_app/protocol/tools.py words them ([] when valid). */
export function toolsTextProblems(text) {
  if (!text.trim()) return [];
  let tools;
  try {
    tools = JSON.parse(text);
  } catch (error) {
    return [`Not valid JSON: ${error.message}.`];
  }
  if (!Array.isArray(tools)) return [`Tools must be a JSON list [ … ] of tool objects, not ${kindOf(tools)}.`];
  if (tools.length > MAX_TOOLS) return [`At most ${MAX_TOOLS} tools (this list has ${tools.length}).`];
  const problems = [];
  const firstUse = new Map();
  tools.forEach((tool, index) => {
    const number = index + 1;
    if (tool === null || typeof tool !== 'object' || Array.isArray(tool)) {
      problems.push(`Tool ${number}: must be an object { … }, not ${kindOf(tool)}.`);
      return;
    }
    const named = typeof tool.name === 'string' && NAME_PATTERN.test(tool.name);
    const label = named ? `Tool ${number} ("${tool.name}")` : `Tool ${number}`;
    problems.push(...toolProblems(tool).map((problem) => `${label}: ${problem}`));
    if (named) {
      if (firstUse.has(tool.name)) problems.push(`${label}: the name is already used by tool ${firstUse.get(tool.name)}.`);
      else firstUse.set(tool.name, number);
    }
  });
  return problems;
}
