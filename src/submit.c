/* placeholder: submit */
