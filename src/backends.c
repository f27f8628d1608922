/* placeholder: backends */
